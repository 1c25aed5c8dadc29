//! `rudder snapshot save|status|restore`: backups of the store as etcd snapshot files.
//! `etcdctl snapshot status` and `snapshot restore` read what `save` writes, and `status`
//! and `restore` here read etcd's own snapshots too (a way from etcd to Rudder).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rudder_printers::table::render;
use rudder_proto::etcdserverpb::SnapshotRequest;
use rudder_raftstore::etcd::snapshot_file;
use rudder_raftstore::restore::restore;

use crate::session::{Session, Target};

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save the store's keyspace, as one master serves it, to FILE (an etcd snapshot).
    Save(SaveArgs),
    /// What a snapshot FILE holds: revision, compaction, versions, leases, size.
    Status(StatusArgs),
    /// Build a new member's data directory from FILE, to start a new cluster on. Restore
    /// every member of the new cluster from the same file, then start each with `rudder
    /// server --data-dir DIR --initial-cluster ...`.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    file: PathBuf,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    file: PathBuf,
    /// `table` or `json`.
    #[arg(short = 'w', long = "write-out", default_value = "table")]
    write_out: String,
    /// Read a file whose SHA-256 is missing or wrong.
    #[arg(long)]
    skip_hash_check: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    file: PathBuf,
    /// The new member's data directory; must not exist yet, or be empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// Restore a file whose SHA-256 is missing (one copied out of a data directory).
    #[arg(long)]
    skip_hash_check: bool,
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save(args) => save(args).await,
        SnapshotCommand::Status(args) => status(args),
        SnapshotCommand::Restore(args) => restore_command(args),
    }
}

async fn save(args: SaveArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let endpoint = session.client.current_endpoint().to_string();
    let mut client =
        rudder_chaos::client::maintenance_with(&endpoint, session.client.tls().as_ref())
            .await
            .map_err(anyhow::Error::msg)?;
    let mut stream = client
        .snapshot(SnapshotRequest {})
        .await
        .with_context(|| format!("asking {endpoint} for a snapshot"))?
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .with_context(|| format!("receiving the snapshot from {endpoint}"))?
    {
        file.extend_from_slice(&chunk.blob);
    }
    let image = snapshot_file::decode(&file, false)
        .with_context(|| format!("the snapshot {endpoint} sent"))?;
    write_whole(&args.file, &file)?;
    println!(
        "Snapshot saved at {} (revision {}, {} bytes, from {endpoint})",
        args.file.display(),
        image.revision,
        file.len()
    );
    println!(
        "Its Secrets are encrypted: keep the masters' keyring (--encryption-keys, or \
         DATA_DIR/encryption.keys) with it, or a restored cluster cannot read them"
    );
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all: into `<path>.part`, synced, then renamed
/// (and the directory synced); the part goes if anything fails.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    let written = (|| -> anyhow::Result<()> {
        let mut out =
            std::fs::File::create(&partial).with_context(|| format!("creating {partial:?}"))?;
        std::io::Write::write_all(&mut out, bytes)
            .with_context(|| format!("writing {partial:?}"))?;
        out.sync_all()
            .with_context(|| format!("syncing {partial:?}"))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("moving {partial:?} to {path:?}"))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        std::fs::File::open(parent.unwrap_or(std::path::Path::new(".")))
            .and_then(|directory| directory.sync_all())
            .with_context(|| format!("syncing the directory of {path:?}"))?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading the snapshot {file:?}"))
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    let file = read(&args.file)?;
    let image = snapshot_file::decode(&file, args.skip_hash_check)
        .with_context(|| format!("reading the snapshot {:?}", args.file))?;
    // The database's size, as etcd reports it (without the hash after it).
    let size = snapshot_file::database_len(&file);
    match args.write_out.as_str() {
        "json" => println!(
            "{}",
            serde_json::json!({
                "revision": image.revision,
                "compactRevision": image.compact_revision,
                "versions": image.versions.len(),
                "leases": image.leases.len(),
                "totalSize": size,
            })
        ),
        "table" => print!(
            "{}",
            render(&[
                ["REVISION", "COMPACTED", "VERSIONS", "LEASES", "TOTAL SIZE"]
                    .map(String::from)
                    .to_vec(),
                vec![
                    image.revision.to_string(),
                    image.compact_revision.to_string(),
                    image.versions.len().to_string(),
                    image.leases.len().to_string(),
                    size.to_string(),
                ],
            ])
        ),
        other => anyhow::bail!("-w {other:?}: the formats are table and json"),
    }
    Ok(())
}

fn restore_command(args: RestoreArgs) -> anyhow::Result<()> {
    let file = read(&args.file)?;
    let restored = restore(&file, &args.data_dir, args.skip_hash_check)
        .with_context(|| format!("restoring {:?} into {:?}", args.file, args.data_dir))?;
    println!(
        "Restored revision {} ({} versions since revision {}, {} leases) into {}",
        restored.revision,
        restored.versions,
        restored.compact_revision,
        restored.leases,
        args.data_dir.display()
    );
    println!(
        "Start it as a member of a new cluster: rudder server --name NAME --data-dir {} \
         --initial-cluster NAME=PEER,... (restore each member from the same file)",
        args.data_dir.display()
    );
    Ok(())
}
