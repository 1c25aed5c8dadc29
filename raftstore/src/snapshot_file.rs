//! The member's last Raft snapshot, in a file beside its database (`db.snapshot` next to
//! `db`), as etcd keeps its snapshots out of its key-value backend.
//!
//! A snapshot is the whole keyspace: a hundred megabytes and more. Kept in RocksDB, every
//! build passed it whole through an encode buffer, a memtable and a flush's block buffer
//! (three copies in memory at once, measured with heaptrack at 10,000 pods: 450 MB of a
//! master's 775 MB peak). Here it is encoded straight into a temporary file, synced, and
//! renamed over the last one, so a crash leaves the old snapshot or the new one, whole.
//!
//! The file is the bincode encoding of the snapshot's meta followed by its data (the
//! encoded image, `state_machine::SnapshotImage`), which is what a follower receives; it is
//! read only when one needs it, and at start.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::codec;
use crate::types::{LogId, SnapshotMeta};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("writing the Raft snapshot {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the Raft snapshot {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the Raft snapshot {path:?}")]
    Encode {
        path: PathBuf,
        #[source]
        source: codec::EncodeError,
    },
    #[error("decoding the Raft snapshot {path:?}: the file is damaged")]
    Decode {
        path: PathBuf,
        #[source]
        source: codec::DecodeError,
    },
}

/// Where a database's snapshot lives, and its reads and writes. Clones share one lock:
/// a build (openraft runs it beside the applies) and an install never write at once, and
/// neither replaces a newer snapshot with an older one.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    /// The last log id of the snapshot this process wrote, if it wrote one.
    written: Arc<Mutex<Option<LogId>>>,
}

impl SnapshotFile {
    /// The snapshot file of the database at `db_path`: `<db_path>.snapshot`.
    pub fn beside(db_path: &Path) -> Self {
        let mut name = db_path.file_name().unwrap_or_default().to_owned();
        name.push(".snapshot");
        Self {
            path: db_path.with_file_name(name),
            written: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the snapshot with `image` at `meta`, encoded as it is written.
    pub fn write_image(
        &self,
        meta: &SnapshotMeta,
        image: &impl Serialize,
    ) -> Result<(), SnapshotFileError> {
        self.replace(meta, |out, path| {
            codec::encode_into(image, out)
                .map(|_| ())
                .map_err(|source| SnapshotFileError::Encode {
                    path: path.to_owned(),
                    source,
                })
        })
    }

    /// Replaces the snapshot with `data` (an encoded image, as a leader sent it) at `meta`.
    pub fn write_data(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), SnapshotFileError> {
        self.replace(meta, |out, path| {
            out.write_all(data)
                .map_err(|source| SnapshotFileError::Write {
                    path: path.to_owned(),
                    source,
                })
        })
    }

    /// The snapshot's meta and data, if one was ever written.
    pub fn read(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SnapshotFileError> {
        let Some(mut file) = self.open()? else {
            return Ok(None);
        };
        let meta = self.meta_from(&mut file)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|source| SnapshotFileError::Read {
                path: self.path.clone(),
                source,
            })?;
        Ok(Some((meta, data)))
    }

    /// The snapshot's meta only (its data is not read), if one was ever written.
    pub fn read_meta(&self) -> Result<Option<SnapshotMeta>, SnapshotFileError> {
        let Some(mut file) = self.open()? else {
            return Ok(None);
        };
        self.meta_from(&mut file).map(Some)
    }

    /// The file, buffered; `None` if there is none.
    fn open(&self) -> Result<Option<BufReader<File>>, SnapshotFileError> {
        match File::open(&self.path) {
            Ok(file) => Ok(Some(BufReader::new(file))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SnapshotFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Decodes the meta at the start of the file, leaving `file` at the data.
    fn meta_from(&self, file: &mut BufReader<File>) -> Result<SnapshotMeta, SnapshotFileError> {
        codec::decode_from(file).map_err(|source| SnapshotFileError::Decode {
            path: self.path.clone(),
            source,
        })
    }

    /// Deletes the snapshot (there is none to keep).
    pub fn remove(&self) -> Result<(), SnapshotFileError> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(SnapshotFileError::Write {
                    path: self.path.clone(),
                    source: error,
                })
            }
            _ => Ok(()),
        }
    }

    /// Writes the meta and then `body` to a temporary file, syncs it, renames it over the
    /// snapshot and syncs the directory; does nothing if the snapshot written last is as new.
    /// A write that fails removes its temporary file (it may be as big as the keyspace).
    fn replace(
        &self,
        meta: &SnapshotMeta,
        body: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), SnapshotFileError>,
    ) -> Result<(), SnapshotFileError> {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if written.is_some() && meta.last_log_id <= *written {
            return Ok(());
        }
        let temporary = self.path.with_extension("snapshot.tmp");
        let replaced = self.write_then_rename(&temporary, meta, body);
        if replaced.is_err() {
            let _ = std::fs::remove_file(&temporary);
        } else {
            *written = meta.last_log_id;
        }
        replaced
    }

    fn write_then_rename(
        &self,
        temporary: &Path,
        meta: &SnapshotMeta,
        body: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), SnapshotFileError>,
    ) -> Result<(), SnapshotFileError> {
        let failed = |source| SnapshotFileError::Write {
            path: temporary.to_owned(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, File::create(temporary).map_err(failed)?);
        codec::encode_into(meta, &mut out).map_err(|source| SnapshotFileError::Encode {
            path: temporary.to_owned(),
            source,
        })?;
        body(&mut out, temporary)?;
        let file = out
            .into_inner()
            .map_err(|error| failed(error.into_error()))?;
        file.sync_all().map_err(failed)?;
        drop(file);
        std::fs::rename(temporary, &self.path).map_err(failed)?;
        // `db.snapshot` alone has the parent "", which is the working directory.
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(|source| SnapshotFileError::Write {
                path: directory.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, StoredMembership};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("snap-{index}"),
        }
    }

    /// A stand-in for the keyspace's image: what matters is that it round-trips.
    fn image(revision: i64) -> (i64, Vec<u8>, String) {
        (revision, vec![7; 3000], "members 1, 2, 3".into())
    }

    /// The names in `dir`: the snapshot only, no temporary file beside it.
    fn files_in(dir: &Path) -> Vec<String> {
        let entries = std::fs::read_dir(dir).unwrap();
        let names = entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned());
        names.collect()
    }

    #[test]
    fn a_written_image_reads_back_as_the_data_a_follower_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::beside(&dir.path().join("db"));
        assert_eq!(file.path(), dir.path().join("db.snapshot"));
        assert!(file.read().unwrap().is_none(), "none before the first");

        file.write_image(&meta(10), &image(42)).unwrap();
        let (read_meta, data) = file.read().unwrap().unwrap();
        assert_eq!(read_meta, meta(10));
        let decoded: (i64, Vec<u8>, String) = codec::decode(&data).unwrap();
        assert_eq!(decoded, image(42));
        assert_eq!(
            data,
            codec::encode(&image(42)).unwrap(),
            "the same bytes as encoded whole"
        );
    }

    #[test]
    fn a_new_snapshot_replaces_the_last_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::beside(&dir.path().join("db"));
        file.write_image(&meta(10), &image(42)).unwrap();
        let data = codec::encode(&image(50)).unwrap();
        file.write_data(&meta(20), &data).unwrap();
        let (read_meta, read_data) = file.read().unwrap().unwrap();
        assert_eq!(read_meta, meta(20));
        assert_eq!(read_data, data);
        assert_eq!(files_in(dir.path()), ["db.snapshot"]);

        file.write_image(&meta(15), &image(45)).unwrap();
        assert_eq!(
            file.read().unwrap().unwrap().0,
            meta(20),
            "a build older than the snapshot installed meanwhile does not replace it"
        );
    }

    #[test]
    fn the_meta_reads_without_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::beside(&dir.path().join("db"));
        assert!(file.read_meta().unwrap().is_none());
        file.write_image(&meta(10), &image(42)).unwrap();
        assert_eq!(file.read_meta().unwrap(), Some(meta(10)));
    }

    #[test]
    fn a_failed_write_keeps_the_last_snapshot_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::beside(&dir.path().join("db"));
        file.write_image(&meta(10), &image(42)).unwrap();
        let failed = file.replace(&meta(20), |out, path| {
            out.write_all(b"half an image").unwrap();
            Err(SnapshotFileError::Write {
                path: path.to_owned(),
                source: std::io::Error::other("disk full"),
            })
        });
        assert!(failed.is_err());
        assert_eq!(file.read_meta().unwrap(), Some(meta(10)));
        assert_eq!(files_in(dir.path()), ["db.snapshot"]);
        file.write_image(&meta(20), &image(50)).unwrap();
        assert_eq!(
            file.read_meta().unwrap(),
            Some(meta(20)),
            "a failure is not remembered as written"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::beside(&dir.path().join("db"));
        std::fs::write(file.path(), [0xff; 3]).unwrap();
        let error = file.read().unwrap_err().to_string();
        assert!(
            error.contains("db.snapshot") && error.contains("damaged"),
            "{error}"
        );
    }
}
