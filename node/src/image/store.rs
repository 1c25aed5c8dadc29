//! The node's content-addressed image store:
//!
//! ```text
//!  <root>/blobs/sha256/<hex>     manifests, configs, compressed layers (verified on entry)
//!  <root>/layers/<diff-id hex>/  each layer unpacked once, shared by every image using it
//!  <root>/refs.json              image reference → manifest digest
//! ```
//! Writes go to a temporary name first and are renamed into place, so a crash never leaves
//! a half-written blob or layer under its final name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};

use super::reference::{Reference, ReferenceError};
use super::unpack::{unpack, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{action} {path:?}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not an OCI image layout (index.json): {reason}")]
    NotALayout { path: PathBuf, reason: String },
    #[error("blob {digest} is corrupt or truncated: its content hashes to sha256:{actual}")]
    Corrupt { digest: String, actual: String },
    #[error("blob {digest} is missing from the store")]
    MissingBlob { digest: String },
    #[error("{what} does not decode: {reason}")]
    Decode { what: String, reason: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("unpacking layer {digest}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("the layout holds {count} images: give each a name by importing them one by one")]
    AmbiguousName { count: usize },
    #[error("image {reference} is not in this node's store")]
    UnknownImage { reference: String },
}

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub reference: String,
    pub manifest: String,
    /// Compressed size of its layers.
    pub size: u64,
}

pub struct ImageStore {
    root: PathBuf,
    /// One layer unpacks at a time in this process (pods starting together need the same
    /// layers); other processes sharing the store are handled by unique temporary
    /// directories and an atomic rename that the first finisher wins.
    unpacking: std::sync::Mutex<()>,
}

/// Distinguishes the temporary directories of unpacks in flight.
static UNPACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
        }
        Ok(Self {
            root: root.into(),
            unpacking: std::sync::Mutex::new(()),
        })
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn refs(&self) -> Result<BTreeMap<String, String>, ImageError> {
        match std::fs::read(self.refs_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Decode {
                what: "refs.json".into(),
                reason: e.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(error) => Err(io("reading", &self.refs_path())(error)),
        }
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let temp = self.root.join("tmp").join(format!(
            "{}.{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            std::process::id()
        ));
        std::fs::write(&temp, bytes).map_err(io("writing", &temp))?;
        std::fs::rename(&temp, path).map_err(io("renaming into", path))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex(digest))
    }

    /// Stores `bytes` as `digest` after checking they hash to it.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let actual = format!("{:x}", Sha256::digest(bytes));
        if actual != hex(digest) {
            return Err(ImageError::Corrupt {
                digest: digest.into(),
                actual,
            });
        }
        let path = self.blob_path(digest);
        if !path.exists() {
            self.write_atomically(&path, bytes)?;
        }
        Ok(())
    }

    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        std::fs::read(self.blob_path(digest)).map_err(|_| ImageError::MissingBlob {
            digest: digest.into(),
        })
    }

    /// Imports every image of an OCI layout directory, or of a tar archive of one. `name`
    /// names the image (a layout with one image); otherwise its `ref.name` annotation does.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<StoredImage>, ImageError> {
        if path.is_dir() {
            return self.import_layout(path, name);
        }
        let scratch = self
            .root
            .join("tmp")
            .join(format!("import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(io("creating", &scratch))?;
        let file = std::fs::File::open(path).map_err(io("opening", path))?;
        let mut head = [0u8; 2];
        let gzipped = std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && head == [0x1f, 0x8b];
        let reader: Box<dyn Read> = if gzipped {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut archive = tar::Archive::new(reader);
        archive.unpack(&scratch).map_err(io("unpacking", path))?;
        let imported = self.import_layout(&scratch, name);
        let _ = std::fs::remove_dir_all(&scratch);
        imported
    }

    fn import_layout(
        &self,
        layout: &Path,
        name: Option<&str>,
    ) -> Result<Vec<StoredImage>, ImageError> {
        let index_path = layout.join("index.json");
        let index = ImageIndex::from_file(&index_path).map_err(|e| ImageError::NotALayout {
            path: layout.into(),
            reason: e.to_string(),
        })?;
        if name.is_some() && index.manifests().len() != 1 {
            return Err(ImageError::AmbiguousName {
                count: index.manifests().len(),
            });
        }
        let read = |digest: &str| {
            let path = layout.join("blobs/sha256").join(hex(digest));
            std::fs::read(&path).map_err(io("reading", &path))
        };
        let mut refs = self.refs()?;
        let mut imported = Vec::new();
        for descriptor in index.manifests() {
            let digest = descriptor.digest().to_string();
            let bytes = read(&digest)?;
            self.put_blob(&digest, &bytes)?;
            let manifest =
                ImageManifest::from_reader(&bytes[..]).map_err(|e| ImageError::Decode {
                    what: format!("manifest {digest}"),
                    reason: e.to_string(),
                })?;
            let config = manifest.config().digest().to_string();
            self.put_blob(&config, &read(&config)?)?;
            let mut size = 0;
            for layer in manifest.layers() {
                let layer_digest = layer.digest().to_string();
                let bytes = read(&layer_digest)?;
                size += bytes.len() as u64;
                self.put_blob(&layer_digest, &bytes)?;
            }
            let annotated = descriptor
                .annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned());
            let given = match (name, annotated) {
                (Some(name), _) => name.to_string(),
                (None, Some(annotated)) if annotated.contains('/') || annotated.contains(':') => {
                    annotated
                }
                (None, tag) => {
                    let base = layout
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("image")
                        .to_ascii_lowercase();
                    format!("{base}:{}", tag.unwrap_or_else(|| "latest".into()))
                }
            };
            let reference = Reference::parse(&given)?.to_string();
            refs.insert(reference.clone(), digest.clone());
            imported.push(StoredImage {
                reference,
                manifest: digest,
                size,
            });
        }
        let text = serde_json::to_vec_pretty(&refs).unwrap_or_default();
        self.write_atomically(&self.refs_path(), &text)?;
        Ok(imported)
    }

    /// Names `manifest` (already stored) as `reference`, e.g. after a pull.
    pub fn tag(&self, reference: &str, manifest: &str) -> Result<(), ImageError> {
        let mut refs = self.refs()?;
        refs.insert(
            Reference::parse(reference)?.to_string(),
            manifest.to_string(),
        );
        let text = serde_json::to_vec_pretty(&refs).unwrap_or_default();
        self.write_atomically(&self.refs_path(), &text)
    }

    /// Every image in the store.
    pub fn list(&self) -> Result<Vec<StoredImage>, ImageError> {
        let mut images = Vec::new();
        for (reference, manifest) in self.refs()? {
            let size = self
                .manifest(&manifest)
                .map(|m| m.layers().iter().map(|l| l.size()).sum())
                .unwrap_or(0);
            images.push(StoredImage {
                reference,
                manifest,
                size,
            });
        }
        Ok(images)
    }

    /// The manifest digest of `reference` (any spelling: `luksa/kubia` finds
    /// `docker.io/luksa/kubia:latest`).
    pub fn resolve(&self, reference: &str) -> Result<String, ImageError> {
        let normalized = Reference::parse(reference)?.to_string();
        self.refs()?
            .get(&normalized)
            .cloned()
            .ok_or(ImageError::UnknownImage {
                reference: normalized,
            })
    }

    fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        ImageManifest::from_reader(&self.blob(digest)?[..]).map_err(|e| ImageError::Decode {
            what: format!("manifest {digest}"),
            reason: e.to_string(),
        })
    }

    /// The image's configuration (entrypoint, env, working directory, ...).
    pub fn config(&self, manifest: &str) -> Result<ImageConfiguration, ImageError> {
        let digest = self.manifest(manifest)?.config().digest().to_string();
        ImageConfiguration::from_reader(&self.blob(&digest)?[..]).map_err(|e| ImageError::Decode {
            what: format!("config {digest}"),
            reason: e.to_string(),
        })
    }

    /// The image's layers unpacked (each once, shared), lowest first: the lower directories
    /// of an overlayfs rootfs.
    pub fn layers(&self, manifest: &str) -> Result<Vec<PathBuf>, ImageError> {
        let layers = self.manifest(manifest)?.layers().clone();
        let config = self.config(manifest)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let mut dirs = Vec::new();
        for (layer, diff_id) in layers.iter().zip(diff_ids.iter()) {
            let dir = self.root.join("layers").join(hex(diff_id));
            let _one_at_a_time = self.unpacking.lock().unwrap_or_else(|p| p.into_inner());
            if !dir.exists() {
                let digest = layer.digest().to_string();
                let unique = UNPACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let temp = self.root.join("tmp").join(format!(
                    "layer-{}-{}-{unique}",
                    hex(diff_id),
                    std::process::id()
                ));
                let _ = std::fs::remove_dir_all(&temp);
                std::fs::create_dir_all(&temp).map_err(io("creating", &temp))?;
                let blob = std::fs::File::open(self.blob_path(&digest)).map_err(|_| {
                    ImageError::MissingBlob {
                        digest: digest.clone(),
                    }
                })?;
                let stream: Box<dyn Read> = if layer.media_type().to_string().ends_with("gzip") {
                    Box::new(flate2::read::GzDecoder::new(blob))
                } else {
                    Box::new(blob)
                };
                unpack(stream, &temp, diff_id).map_err(|source| ImageError::Unpack {
                    digest: digest.clone(),
                    source,
                })?;
                if let Err(error) = std::fs::rename(&temp, &dir) {
                    let _ = std::fs::remove_dir_all(&temp);
                    // Another process unpacked it first: theirs is complete (renamed whole).
                    if !dir.exists() {
                        return Err(io("renaming into", &dir)(error));
                    }
                }
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }
}
