//! Pulling an image over the OCI distribution API (oci-client) into the node's store:
//! the manifest (an index resolves to this machine's platform), the config and each layer,
//! every blob checked against its digest by the store before it is kept.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_spec::image::{ImageIndex, ImageManifest};

use super::reference::Reference;
use super::store::{ImageError, ImageStore};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] super::reference::ReferenceError),
    #[error("reference {name:?}: {source}")]
    BadReference {
        name: String,
        source: oci_client::ParseError,
    },
    #[error("the registry refused or failed: starting a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the registry refused or failed: {0}")]
    Registry(#[from] OciDistributionError),
    #[error("{name} has no image for {os}/{arch}")]
    NoPlatform {
        name: String,
        os: &'static str,
        arch: &'static str,
    },
    #[error("{name}: its manifest does not decode: {source}")]
    BadManifest {
        name: String,
        source: oci_spec::OciSpecError,
    },
    #[error(transparent)]
    Store(#[from] ImageError),
}

/// Where this node may pull from. A node pulls only from the registries it is told about
/// (this project's machines must not reach the internet) and from registries on this
/// machine's loopback (`localhost`, 127.0.0.0/8, `[::1]`), which it reaches over plain HTTP
/// as Docker does; otherwise it runs what `rudder image import` put in its store.
#[derive(Debug, Clone, Default)]
pub struct PullConfig {
    /// Registries (host[:port], `docker.io` for Docker Hub) to pull from; `*`: any.
    pub registries: Vec<String>,
    /// Those of them reached over plain HTTP, like containerd's insecure registries.
    pub insecure_registries: Vec<String>,
}

impl PullConfig {
    pub fn allows(&self, registry: &str) -> bool {
        is_loopback(registry) || self.registries.iter().any(|r| r == "*" || r == registry)
    }

    /// The registries reached over plain HTTP for a pull from `registry`: the configured
    /// ones, and `registry` itself when it is on loopback.
    fn plain_http_for(&self, registry: &str) -> Vec<String> {
        let mut plain = self.insecure_registries.clone();
        if is_loopback(registry) {
            plain.push(registry.to_string());
        }
        plain
    }
}

/// Whether a registry (`host[:port]`) is on this machine's loopback.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        // [::1]:5000
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    ("linux", arch)
}

/// Makes rustls use ring for HTTPS registries (once per process; later calls do nothing).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Pulls `reference` into `store` and names it there; returns the manifest digest. Blocks
/// (it runs its own small runtime): call it from a worker thread.
pub fn pull(store: &ImageStore, reference: &str, config: &PullConfig) -> Result<String, PullError> {
    let name = Reference::parse(reference)?.to_string();
    let image: oci_client::Reference = name.parse().map_err(|source| PullError::BadReference {
        name: name.clone(),
        source,
    })?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(config.plain_http_for(image.resolve_registry())),
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PullError::Runtime)?;
    runtime.block_on(async {
        let accepted = [
            OCI_IMAGE_MEDIA_TYPE,
            IMAGE_MANIFEST_MEDIA_TYPE,
            OCI_IMAGE_INDEX_MEDIA_TYPE,
            IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ];
        let auth = RegistryAuth::Anonymous;
        let (mut bytes, mut digest) = client.pull_manifest_raw(&image, &auth, &accepted).await?;
        let mut source = image.clone();
        if let Ok(index) = ImageIndex::from_reader(&bytes[..]) {
            if !index.manifests().is_empty() && ImageManifest::from_reader(&bytes[..]).is_err() {
                let (os, arch) = platform();
                let chosen = index
                    .manifests()
                    .iter()
                    .find(|m| {
                        m.platform().as_ref().is_some_and(|p| {
                            p.os().to_string() == os && p.architecture().to_string() == arch
                        })
                    })
                    .ok_or_else(|| PullError::NoPlatform {
                        name: name.clone(),
                        os,
                        arch,
                    })?;
                store.put_blob(&digest, &bytes)?;
                source = image.clone_with_digest(chosen.digest().to_string());
                (bytes, digest) = client.pull_manifest_raw(&source, &auth, &accepted).await?;
            }
        }
        let manifest =
            ImageManifest::from_reader(&bytes[..]).map_err(|source| PullError::BadManifest {
                name: name.clone(),
                source,
            })?;
        let blobs = std::iter::once(manifest.config().digest().to_string())
            .chain(manifest.layers().iter().map(|l| l.digest().to_string()));
        for blob in blobs {
            if store.blob(&blob).is_ok() {
                continue;
            }
            let mut content = Vec::new();
            client
                .pull_blob(&source, blob.as_str(), &mut content)
                .await?;
            store.put_blob(&blob, &content)?;
        }
        store.put_blob(&digest, &bytes)?;
        store.tag(&name, &digest)?;
        Ok(digest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_allowed_over_plain_http_without_flags() {
        let config = PullConfig::default();
        for registry in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(config.allows(registry), "{registry}");
            assert_eq!(config.plain_http_for(registry), [registry.to_string()]);
        }
        for registry in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fd00::1]:5000",
        ] {
            assert!(!config.allows(registry), "{registry}");
            assert!(config.plain_http_for(registry).is_empty(), "{registry}");
        }
        let told = PullConfig {
            registries: vec!["registry.internal:5000".into()],
            insecure_registries: vec!["registry.internal:5000".into()],
        };
        assert!(told.allows("registry.internal:5000"));
        assert_eq!(
            told.plain_http_for("registry.internal:5000"),
            ["registry.internal:5000"]
        );
    }
}
