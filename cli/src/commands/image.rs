//! `rudder image import|list`: the node's image store, filled without a registry (an OCI
//! layout directory or archive, e.g. from `scripts/build-kubia-image.sh` or `skopeo copy`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rudder_node::image::store::ImageStore;

use rudder_printers::table::render;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image layout (a directory, or a .tar / .tar.gz of one).
    Import(ImportArgs),
    /// The images in this node's store.
    List(StoreArgs),
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The node's image store.
    #[arg(long, default_value = "/var/lib/rudder/images")]
    root: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The layout directory or archive.
    file: PathBuf,
    /// The image's name (e.g. luksa/kubia:latest); default: the layout's ref.name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import(args) => {
            let store = ImageStore::open(&args.store.root)
                .with_context(|| format!("opening the image store {:?}", args.store.root))?;
            for image in store.import(&args.file, args.name.as_deref())? {
                println!("imported {} ({})", image.reference, image.manifest);
            }
            Ok(())
        }
        ImageCommand::List(args) => {
            let store = ImageStore::open(&args.root)
                .with_context(|| format!("opening the image store {:?}", args.root))?;
            let mut rows = vec![vec!["IMAGE".to_string(), "DIGEST".into(), "SIZE".into()]];
            for image in store.list()? {
                let short = image
                    .manifest
                    .get(..19)
                    .unwrap_or(&image.manifest)
                    .to_string();
                rows.push(vec![
                    image.reference,
                    short,
                    format!("{:.1}MB", image.size as f64 / 1e6),
                ]);
            }
            print!("{}", render(&rows));
            Ok(())
        }
    }
}
