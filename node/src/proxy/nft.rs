//! Running `nft`: a script from [`super::ruleset`] goes to `nft -f -` as one transaction
//! (all of it applies, or none). Text rather than JSON, as kube-proxy's knftables does: the
//! Rust crates for nftables cannot declare verdict maps (nftables-rs) or lack `numgen`
//! and dynamic sets (rustables, nftnl), and nft's text is its documented syntax.
//!
//! The process runs in the calling thread's network namespace.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft (install the nftables package: scripts/dev.sh up): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the ruleset: {0}")]
    Refused(String),
}

/// Applies `script` in one transaction.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes());
    let output = child.wait_with_output().map_err(NftError::Spawn)?;
    if !output.status.success() {
        return Err(NftError::Refused(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    written.map_err(NftError::Spawn)
}

/// The text of `table` as nft lists it (empty if there is none).
pub fn list(table: &str) -> Result<String, NftError> {
    let output = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .map_err(NftError::Spawn)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `table` has `chain` (false also when there is no table).
pub fn has_chain(table: &str, chain: &str) -> Result<bool, NftError> {
    let output = Command::new("nft")
        .args(["list", "chain", "ip", table, chain])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(NftError::Spawn)?;
    Ok(output.success())
}
