//! Unpacking one image layer into its own directory, ready to stack with overlayfs: the OCI
//! whiteouts (`.wh.NAME`, `.wh..wh..opq`) become overlayfs whiteouts (a 0:0 character
//! device, the `trusted.overlay.opaque` attribute). Paths that would escape the directory
//! are refused, and the layer's uncompressed digest (its diff_id) is checked.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer")]
    Read(#[source] std::io::Error),
    #[error("layer entry {path:?} would land outside the layer directory")]
    Escapes { path: PathBuf },
    #[error("writing {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the layer's content is sha256:{actual}, its image config says {expected}: the layer is corrupt")]
    DiffId { expected: String, actual: String },
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hash.update(&buf[..read]);
        Ok(read)
    }
}

/// Unpacks the uncompressed tar stream `layer` into `target` (which must exist) and checks
/// that its sha256 is `diff_id` (`sha256:<hex>`).
pub fn unpack(layer: impl Read, target: &Path, diff_id: &str) -> Result<(), UnpackError> {
    let mut hashing = Hashing {
        inner: layer,
        hash: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            let path = entry.path().map_err(UnpackError::Read)?.into_owned();
            let relative = contained(&path)?;
            let name = relative
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let parent = target.join(relative.parent().unwrap_or(Path::new("")));
            if name == OPAQUE_MARKER {
                std::fs::create_dir_all(&parent).map_err(|source| UnpackError::Write {
                    path: parent.clone(),
                    source,
                })?;
                xattr::set(&parent, "trusted.overlay.opaque", b"y").map_err(|source| {
                    UnpackError::Write {
                        path: parent.clone(),
                        source,
                    }
                })?;
            } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                std::fs::create_dir_all(&parent).map_err(|source| UnpackError::Write {
                    path: parent.clone(),
                    source,
                })?;
                whiteout(&parent.join(hidden))?;
            } else {
                entry
                    .unpack_in(target)
                    .map_err(|source| UnpackError::Write {
                        path: target.join(&relative),
                        source,
                    })?;
            }
        }
    }
    // Whatever the tar reader left unread (padding) still counts toward the digest.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(UnpackError::Read)?;
    let actual = format!("{:x}", hashing.hash.finalize());
    let expected = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
    if actual != expected {
        return Err(UnpackError::DiffId {
            expected: diff_id.into(),
            actual,
        });
    }
    Ok(())
}

/// `path` without leading `/` or `./`, refused if it climbs out with `..`.
fn contained(path: &Path) -> Result<PathBuf, UnpackError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Escapes { path: path.into() })
            }
        }
    }
    Ok(clean)
}

/// An overlayfs whiteout: a character device 0:0 that hides the lower layers' `path`.
fn whiteout(path: &Path) -> Result<(), UnpackError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let _ = std::fs::remove_file(path);
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|errno| UnpackError::Write {
        path: path.into(),
        source: std::io::Error::from(errno),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts_and_files_land_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let tar = layer(&[
            ("etc/motd", b"hello"),
            ("etc/.wh.old.conf", b""),
            ("var/cache/.wh..wh..opq", b""),
        ]);
        unpack(&tar[..], dir.path(), &digest(&tar)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("etc/motd")).unwrap(),
            b"hello"
        );
        let hidden = std::fs::metadata(dir.path().join("etc/old.conf")).unwrap();
        assert!(hidden.file_type().is_char_device());
        let opaque = xattr::get(dir.path().join("var/cache"), "trusted.overlay.opaque").unwrap();
        assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn a_layer_whose_digest_differs_from_its_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tar = layer(&[("a", b"1")]);
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            unpack(&tar[..], dir.path(), &wrong),
            Err(UnpackError::DiffId { .. })
        ));
    }

    #[test]
    fn paths_climbing_out_are_refused() {
        assert!(contained(Path::new("../../etc/passwd")).is_err());
        assert_eq!(
            contained(Path::new("./usr/bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
    }
}
