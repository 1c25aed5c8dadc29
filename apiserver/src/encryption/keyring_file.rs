//! The keyring's file: read, written readable by its owner only (replaced whole, never
//! half-written), and followed by a running master, which takes a changed file within
//! [`CHECK_EVERY`] without a restart.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use super::{Keyring, KeyringError, SharedKeyring};

/// How often a master looks at its keyring file for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    #[error("reading the Secret-encryption keyring {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Secret-encryption keyring {path:?}: {source}")]
    Invalid { path: PathBuf, source: KeyringError },
    #[error("writing the Secret-encryption keyring {path:?}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Secret-encryption keyring {path:?} exists already: it is not replaced")]
    Exists { path: PathBuf },
    #[error(
        "the Secret-encryption keyring {path:?} can be read by others (mode {mode:o}): \
         `chmod 600` it"
    )]
    Readable { path: PathBuf, mode: u32 },
}

/// The keyring in `path`. Refused when others than its owner may read it.
pub fn read(path: &Path) -> Result<Keyring, KeyringFileError> {
    let read_error = |source| KeyringFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_error)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyringFileError::Readable {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    Keyring::parse(&text).map_err(|source| KeyringFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `keyring` to `path` (mode 0600), replacing it whole: a reader sees the old file
/// or the new one.
pub fn write(path: &Path, keyring: &Keyring) -> Result<(), KeyringFileError> {
    let partial = write_partial(path, keyring)?;
    std::fs::rename(&partial, path).map_err(|source| KeyringFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `keyring` in a file beside `path`, synced, to be moved into place.
fn write_partial(path: &Path, keyring: &Keyring) -> Result<PathBuf, KeyringFileError> {
    let write_error = |source| KeyringFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(write_error)?;
    file.write_all(keyring.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    Ok(partial)
}

/// A new keyring of one random key in `path`, which must not exist (nor come to exist
/// meanwhile: it is never replaced).
pub fn create(path: &Path) -> Result<Keyring, KeyringFileError> {
    if path.exists() {
        return Err(KeyringFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| KeyringFileError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let keyring = Keyring::generate("key1").map_err(|source| KeyringFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    let partial = write_partial(path, &keyring)?;
    // A link fails where a file is, unlike a rename: two creators cannot both win.
    let linked = std::fs::hard_link(&partial, path);
    let _ = std::fs::remove_file(&partial);
    match linked {
        Ok(()) => Ok(keyring),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(KeyringFileError::Exists {
                path: path.to_path_buf(),
            })
        }
        Err(source) => Err(KeyringFileError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Changes the keyring in `path` with `change` and writes it back; answers the new one.
pub fn edit(
    path: &Path,
    change: impl FnOnce(&mut Keyring) -> Result<(), KeyringError>,
) -> Result<Keyring, KeyringFileError> {
    let mut keyring = read(path)?;
    change(&mut keyring).map_err(|source| KeyringFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    write(path, &keyring)?;
    Ok(keyring)
}

/// Replaces `keys` with the keyring in `path` whenever the file holds another, until
/// `stopped`. The file's contents are compared, not its time or size (a key made first
/// changes neither its size nor, on coarse clocks, its time), and from the keyring in use:
/// a change made while the master was starting is taken too. A file that does not read as
/// a keyring is reported (once per distinct problem) and the keys kept.
pub async fn follow(path: PathBuf, keys: SharedKeyring, mut stopped: watch::Receiver<bool>) {
    let mut reported = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stopped.changed() => return,
        }
        match read(&path) {
            Ok(keyring) => {
                reported = None;
                if keyring.to_text() == keys.current().to_text() {
                    continue;
                }
                tracing::info!(
                    path = %path.display(),
                    sealing = keyring.sealing(),
                    keys = ?keyring.names(),
                    "the Secret-encryption keyring changed: taken"
                );
                keys.replace(keyring);
            }
            Err(error) => {
                let problem = error.to_string();
                if reported.as_ref() != Some(&problem) {
                    tracing::error!(
                        error = %problem,
                        "the Secret-encryption keyring is not taken: the keys before stay"
                    );
                    reported = Some(problem);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_is_created_once_edited_and_refused_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pki/secrets.keys");
        let created = create(&path).unwrap();
        assert_eq!(created.names(), ["key1"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            create(&path),
            Err(KeyringFileError::Exists { .. })
        ));

        let edited = edit(&path, |keyring| {
            keyring.add("key2")?;
            keyring.make_first("key2")
        })
        .unwrap();
        assert_eq!(read(&path).unwrap().names(), edited.names());
        assert_eq!(edited.names(), ["key2", "key1"]);

        assert!(
            std::fs::read_dir(dir.path().join("pki")).unwrap().count() == 1,
            "no partial file left"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = read(&path).unwrap_err().to_string();
        assert!(refused.contains("`chmod 600` it"), "{refused}");
    }

    #[tokio::test]
    async fn a_master_takes_a_changed_keyring_even_one_changed_while_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption.keys");
        let keys = SharedKeyring::new(create(&path).unwrap());
        // Changed before the master follows the file: same size, maybe the same time.
        edit(&path, |keyring| {
            keyring.add("key2")?;
            keyring.make_first("key2")
        })
        .unwrap();
        let (stop, stopped) = watch::channel(false);
        let following = tokio::spawn(follow(path.clone(), keys.clone(), stopped));
        let deadline = tokio::time::Instant::now() + 3 * CHECK_EVERY;
        while keys.current().sealing() != "key2" {
            assert!(tokio::time::Instant::now() < deadline, "not taken");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // A broken file is not taken.
        std::fs::write(&path, "garbage").unwrap();
        tokio::time::sleep(CHECK_EVERY + CHECK_EVERY / 2).await;
        assert_eq!(keys.current().names(), ["key2", "key1"]);
        stop.send(true).unwrap();
        following.await.unwrap();
    }
}
