//! `rudder ca`: the cluster's PKI directory — its CA (`ca.crt`, `ca.key`) and the keyring
//! Secrets are encrypted with (`encryption.keys`), which every master holds — and client
//! certificates it signs for operators and components. `rudder up` makes one for its
//! cluster; `rudder ca init DIR` makes one ahead of time for masters started together
//! (`rudder server --pki DIR` on each, a copy on each machine).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use rudder_apiserver::encryption::keyring_file;
use rudder_proto::tls::{self, CertificateRequest, ClusterCa, Issued};

/// The files of a PKI directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const KEYRING: &str = "encryption.keys";
pub const SERVICE_ACCOUNT_KEY: &str = "service-account.key";

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Makes a PKI directory: a new CA, a new Secret-encryption keyring and the key
    /// ServiceAccount tokens are signed with.
    Init { dir: PathBuf },
    /// Signs a client certificate for USER (in GROUP: `system:masters` is the cluster's
    /// administrators) into CERT and KEY.
    Issue {
        dir: PathBuf,
        user: String,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Makes the key ServiceAccount tokens are signed with, in a PKI directory made before
    /// there were tokens (copy it into every master's PKI directory).
    ServiceAccountKey { dir: PathBuf },
}

pub fn run(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { dir } => {
            init(&dir)?;
            println!(
                "PKI directory {} made (CA and Secret-encryption keyring, readable by you only): \
                 start every master with --pki {} (a copy on each machine), and give \
                 operators certificates with `rudder ca issue`",
                dir.display(),
                dir.display()
            );
        }
        CaCommand::ServiceAccountKey { dir } => {
            let path = dir.join(SERVICE_ACCOUNT_KEY);
            if path.exists() {
                bail!(
                    "{} exists already: every master must sign with the same key",
                    path.display()
                );
            }
            service_account_key(&dir)?;
            println!(
                "{} made (readable by you only): copy it into every master's PKI directory",
                path.display()
            );
        }
        CaCommand::Issue {
            dir,
            user,
            group,
            cert,
            key,
        } => {
            let issued = load(&dir)?.issue(&request_for(&user, group.as_deref()))?;
            write_issued(&issued, &cert, &key)?;
            println!(
                "certificate for {user}{} written to {} (key {})",
                group.map(|g| format!(" in {g}")).unwrap_or_default(),
                cert.display(),
                key.display()
            );
        }
    }
    Ok(())
}

/// Makes the PKI directory `dir` (refused if it holds a CA already); answers its CA.
pub fn init(dir: &Path) -> anyhow::Result<ClusterCa> {
    if dir.join(CA_CERT).exists() || dir.join(CA_KEY).exists() {
        bail!(
            "{} holds a CA already: a new one would not be trusted by what the old one signed",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = ClusterCa::generate("rudder-ca")?;
    write_private(&dir.join(CA_KEY), ca.key_pem())?;
    write_public(&dir.join(CA_CERT), ca.cert_pem())?;
    if !dir.join(KEYRING).exists() {
        keyring_file::create(&dir.join(KEYRING))?;
    }
    service_account_key(dir)?;
    Ok(ca)
}

/// The key ServiceAccount tokens are signed with, as a master reads it from its PKI
/// directory `dir` (never made here: masters that each made their own would refuse each
/// other's tokens).
pub fn load_service_account_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(SERVICE_ACCOUNT_KEY);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (a PKI directory made before ServiceAccount tokens has none: make one \
             with `rudder ca service-account-key {}` and copy it into every master's PKI \
             directory)",
            path.display(),
            dir.display()
        )
    })
}

/// The key ServiceAccount tokens are signed with, in the PKI directory `dir`, made if it
/// has none (by `rudder ca init`, `rudder ca service-account-key`, and `rudder up` for the
/// directory it keeps).
pub fn service_account_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(SERVICE_ACCOUNT_KEY);
    if let Ok(pem) = std::fs::read_to_string(&path) {
        return Ok(pem);
    }
    let pem = tls::new_signing_key_pem()?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        // Made by another process of this machine meanwhile: that one is the key.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("creating {}", path.display()));
        }
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(pem)
}

/// The CA of the PKI directory `dir`.
pub fn load(dir: &Path) -> anyhow::Result<ClusterCa> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (a PKI directory is made by `rudder ca init DIR`)",
                path.display()
            )
        })
    };
    ClusterCa::from_pem(read(CA_CERT)?, read(CA_KEY)?)
        .with_context(|| format!("the CA in {}", dir.display()))
}

/// Writes a certificate (readable by all) and its key (by its owner only).
pub fn write_issued(issued: &Issued, cert: &Path, key: &Path) -> anyhow::Result<()> {
    write_private(key, &issued.key_pem)?;
    write_public(cert, &issued.cert_pem)
}

fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `text` in a new file readable by its owner only (an existing one is replaced).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The certificate `user` in `group` gets: a node's (`system:node:NAME` in
/// `system:nodes`) also serves the node's kubelet port, named for the node; anyone
/// else's is a client's.
pub fn request_for(user: &str, group: Option<&str>) -> CertificateRequest {
    match (user.strip_prefix(tls::NODE_USER_PREFIX), group) {
        (Some(node), Some(tls::NODES_GROUP)) if !node.is_empty() => CertificateRequest::node(node),
        _ => CertificateRequest::client(user, group),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_pki_directory_is_made_once_and_its_ca_signs() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        init(&pki).unwrap();
        let mode = |name: &str| {
            std::fs::metadata(pki.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY), 0o600);
        assert_eq!(mode(KEYRING), 0o600);
        let refused = init(&pki).unwrap_err().to_string();
        assert!(refused.contains("holds a CA already"), "{refused}");
        let issued = load(&pki)
            .unwrap()
            .issue(&CertificateRequest::client("alice", None))
            .unwrap();
        write_issued(
            &issued,
            &dir.path().join("a.crt"),
            &dir.path().join("a.key"),
        )
        .unwrap();
        let missing = load(&dir.path().join("none")).unwrap_err();
        assert!(
            format!("{missing:#}").contains("rudder ca init DIR"),
            "{missing:#}"
        );
    }
}
