//! `rudder encryption-keys`: the keyring Secrets are sealed with before they enter the store
//! (`rudder_apiserver::encryption`). The file verbs change a keyring file, which running
//! masters take within seconds; `reencrypt` rewrites every Secret through the API so each is
//! sealed by the keyring's first key.
//!
//! Rotating the key of a cluster of several masters, none of them ever unable to read a
//! Secret another wrote:
//! `add` (copy the file to every master) → `use NEW` (copy again) → `reencrypt` →
//! `remove OLD` (copy again). With one master, `rotate` does the first two at once.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rudder_apiserver::encryption::keyring_file;
use rudder_apiserver::encryption::Keyring;
use serde_json::json;

use crate::commands::get::list_matching;
use crate::session::{Session, Target};

#[derive(Subcommand, Debug)]
pub enum EncryptionKeysCommand {
    /// Makes a new keyring of one random key (give the same file to every master with
    /// `rudder server --encryption-keys FILE`).
    New { file: PathBuf },
    /// Adds a random key last: masters open what it seals, and it seals nothing yet.
    Add { file: PathBuf },
    /// Makes a key first: masters seal new writes with it.
    Use { file: PathBuf, name: String },
    /// Adds a random key and makes it first (one master; several: `add`, then `use`).
    Rotate { file: PathBuf },
    /// Removes a key that no longer seals (after `reencrypt`).
    Remove { file: PathBuf, name: String },
    /// Lists the keys' names, the sealing one first (never the keys).
    List { file: PathBuf },
    /// Writes every Secret again, so each is sealed by the masters' first key.
    Reencrypt(ReencryptArgs),
}

#[derive(Args, Debug)]
pub struct ReencryptArgs {
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: EncryptionKeysCommand) -> anyhow::Result<()> {
    match command {
        EncryptionKeysCommand::New { file } => {
            keyring_file::create(&file)?;
            println!(
                "keyring {} made (key1, readable by you only): start every master with \
                 --encryption-keys {}",
                file.display(),
                file.display()
            );
        }
        EncryptionKeysCommand::Add { file } => {
            let mut name = String::new();
            let keyring = keyring_file::edit(&file, |keyring| {
                name = keyring.next_name();
                keyring.add(&name)
            })?;
            println!("{name} added; it seals once first ({})", listed(&keyring));
            println!(
                "next: copy {} to every master, then `rudder encryption-keys use {} {name}`",
                file.display(),
                file.display()
            );
        }
        EncryptionKeysCommand::Use { file, name } => {
            let keyring = keyring_file::edit(&file, |keyring| keyring.make_first(&name))?;
            println!("{name} seals new writes ({})", listed(&keyring));
            println!(
                "next: copy {} to every master, then `rudder encryption-keys reencrypt`",
                file.display()
            );
        }
        EncryptionKeysCommand::Rotate { file } => {
            let mut name = String::new();
            let keyring = keyring_file::edit(&file, |keyring| {
                name = keyring.next_name();
                keyring.add(&name)?;
                keyring.make_first(&name)
            })?;
            println!("{name} added and sealing new writes ({})", listed(&keyring));
            println!("next: `rudder encryption-keys reencrypt`, then remove the old key");
        }
        EncryptionKeysCommand::Remove { file, name } => {
            let keyring = keyring_file::edit(&file, |keyring| keyring.remove(&name))?;
            println!("{name} removed ({})", listed(&keyring));
        }
        EncryptionKeysCommand::List { file } => list(&file)?,
        EncryptionKeysCommand::Reencrypt(args) => reencrypt(args).await?,
    }
    Ok(())
}

fn listed(keyring: &Keyring) -> String {
    format!("keys, sealing first: {}", keyring.names().join(", "))
}

fn list(file: &Path) -> anyhow::Result<()> {
    let keyring = keyring_file::read(file)?;
    println!("NAME\tSEALS");
    for (index, name) in keyring.names().into_iter().enumerate() {
        println!("{name}\t{}", if index == 0 { "yes" } else { "no" });
    }
    Ok(())
}

/// Patches every Secret with nothing: a master writes a Secret sealed by a key that no
/// longer seals (or in clear) again even when nothing changed.
async fn reencrypt(args: ReencryptArgs) -> anyhow::Result<()> {
    let session = Session::connect(&args.target).await?;
    let kind = session.kind("secrets")?.clone();
    let (secrets, _) = list_matching(&session, &kind, "", "", "", 500).await?;
    let total = secrets.len();
    let (mut rewritten, mut gone) = (0, 0);
    for (index, secret) in secrets.iter().enumerate() {
        let namespace = secret["metadata"]["namespace"].as_str().unwrap_or("");
        let name = secret["metadata"]["name"].as_str().unwrap_or("");
        let patched = session
            .client
            .patch_object(&kind.resource, namespace, name, &json!({}), false)
            .await;
        match patched {
            Ok(now) => {
                if now["metadata"]["resourceVersion"] != secret["metadata"]["resourceVersion"] {
                    rewritten += 1;
                }
            }
            Err(error) if error.is_not_found() => gone += 1,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "rewriting secret {namespace}/{name} ({index} of {total} done; \
                         run again to go on)"
                    )
                })
            }
        }
        if (index + 1) % 100 == 0 {
            eprintln!("{} of {total} Secrets...", index + 1);
        }
    }
    if total == 0 {
        println!("no Secrets to re-encrypt");
        return Ok(());
    }
    println!(
        "{total} Secrets: {rewritten} written again with the sealing key, {} were already \
         sealed by it{}",
        total - rewritten - gone,
        if gone > 0 {
            format!(", {gone} deleted meanwhile")
        } else {
            String::new()
        }
    );
    Ok(())
}
