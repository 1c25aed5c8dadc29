//! `rudder node reset --name NAME`: removes everything a stopped node made on this machine
//! (as `kubeadm reset`); refuses while that node runs.

use anyhow::{bail, Context};
use clap::Args;

#[derive(Args, Debug)]
pub struct ResetArgs {
    /// The node's name (as given to `rudder node --name`).
    #[arg(long)]
    name: String,
    /// The node's state directory (as given to `rudder node --root`); default
    /// /var/lib/rudder/node/NAME.
    #[arg(long)]
    root: Option<std::path::PathBuf>,
}

/// `rudder node reset`: refuses while the node runs, then removes what it made.
pub fn run(args: &ResetArgs) -> anyhow::Result<()> {
    let root = args
        .root
        .clone()
        .unwrap_or_else(|| std::path::Path::new("/var/lib/rudder/node").join(&args.name));
    if let Some(pid) = running_node(&args.name) {
        bail!(
            "node {} is running (pid {pid}): stop it first, or its kubelet starts the pods again",
            args.name
        );
    }
    let removed = rudder_node::runtime::linux::reset::reset(&args.name, &root)
        .with_context(|| format!("resetting node {}", args.name))?;
    for line in &removed {
        println!("removed {line}");
    }
    println!("node {} reset", args.name);
    Ok(())
}

/// A `rudder node --name NAME` process running on this machine.
fn running_node(name: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_node = words.get(1) == Some(&b"node".as_slice())
                && words
                    .windows(2)
                    .any(|w| w[0] == b"--name" && w[1] == name.as_bytes())
                && !words.contains(&b"reset".as_slice());
            (is_node && pid != me).then_some(pid)
        })
}
