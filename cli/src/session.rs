//! Talking to the API: which masters (flags, `RUDDER_SERVER`, or the config `rudder up`
//! writes), the kinds they serve (discovery), and kind resolution as kubectl does it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use rudder_proto::api as pb;
use rudder_proto::client::ApiClient;
use rudder_proto::tls::{ClientTls, Issued};
use serde::{Deserialize, Serialize};

/// Where the API servers are, and who calls them (global: given before or after a
/// subcommand, `rudder create token NAME --server ...`).
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// API servers (master client addresses): host:port[,host:port...]. Default: the
    /// RUDDER_SERVER variable, else the config file `rudder up` writes.
    #[arg(
        short = 's',
        long,
        env = "RUDDER_SERVER",
        value_delimiter = ',',
        global = true
    )]
    pub server: Vec<String>,
    /// The CLI config file (default: $RUDDER_CONFIG, else ~/.rudder/config).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The cluster CA's certificate, to speak TLS to the masters (default: the CLI
    /// config's).
    #[arg(long, global = true)]
    pub certificate_authority: Option<PathBuf>,
    /// This client's certificate (and --client-key), signed by the cluster CA.
    #[arg(long, requires = "client_key", global = true)]
    pub client_certificate: Option<PathBuf>,
    #[arg(long, requires = "client_certificate", global = true)]
    pub client_key: Option<PathBuf>,
    /// A bearer token to call with instead of a client certificate (a ServiceAccount's:
    /// `rudder create token NAME`). For `rudder node`: a join token (`rudder token create
    /// --role node`).
    #[arg(long, env = "RUDDER_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// What `rudder up` writes and the CLI reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CliConfig {
    pub servers: Vec<String>,
    /// The cluster's one address in front of its masters (`rudder up`'s balancer), which
    /// kubeconfigs name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// TLS to the masters: the cluster CA's certificate and this client's (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// The config file path: `--config`, `$RUDDER_CONFIG`, else `~/.rudder/config`.
pub fn config_path(given: Option<&PathBuf>) -> PathBuf {
    if let Some(path) = given {
        return path.clone();
    }
    if let Some(path) = std::env::var_os("RUDDER_CONFIG") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".rudder").join("config")
}

pub fn write_config(path: &PathBuf, config: &CliConfig) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the config directory {parent:?}"))?;
    }
    let text = serde_yaml::to_string(config)?;
    std::fs::write(path, text).with_context(|| format!("writing the CLI config {path:?}"))
}

/// A connection to the API with the server's kinds.
pub struct Session {
    pub client: ApiClient,
    kinds: Vec<pb::Kind>,
    /// Client addresses of every master, as the cluster knows them.
    pub masters: Vec<String>,
    pub server_version: String,
}

impl Session {
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let mut servers = servers(target)?;
        let tls = client_tls(target)?;
        let client = api_client(target, servers.clone(), tls.clone())?;
        let discovered = client
            .call(|mut c| async move { c.discover(pb::DiscoverRequest {}).await })
            .await?;
        // Every master the cluster knows, after the ones given: failover needs them all.
        let known = servers.len();
        for master in &discovered.masters {
            if !servers.contains(master) {
                servers.push(master.clone());
            }
        }
        let client = if servers.len() > known {
            api_client(target, servers, tls)?
        } else {
            client
        };
        Ok(Self {
            client,
            kinds: discovered.kinds,
            masters: discovered.masters,
            server_version: discovered.server_version,
        })
    }

    /// Resolves a kind as kubectl does: `pods`, `pod`, `po`, `Pod`, `deployments.apps`.
    pub fn kind(&self, name: &str) -> anyhow::Result<&pb::Kind> {
        let lower = name.to_ascii_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((base, group)) => (base.to_string(), Some(group.to_string())),
            None => (lower.clone(), None),
        };
        self.kinds
            .iter()
            .find(|k| {
                (k.resource == base
                    || k.singular == base
                    || k.kind.to_ascii_lowercase() == base
                    || k.short_names.contains(&base))
                    && group.as_ref().is_none_or(|g| *g == k.group)
            })
            .with_context(|| {
                format!(
                    "the server doesn't have a resource type {name:?} (known: {})",
                    self.kinds
                        .iter()
                        .map(|k| k.resource.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The kind of a manifest by its apiVersion and kind.
    pub fn kind_of_document(&self, document: &serde_json::Value) -> anyhow::Result<&pb::Kind> {
        let api_version = document["apiVersion"].as_str().unwrap_or("");
        let kind = document["kind"].as_str().unwrap_or("");
        if kind.is_empty() || api_version.is_empty() {
            bail!("the document has no apiVersion or kind: every manifest needs both");
        }
        self.kinds
            .iter()
            .find(|k| k.api_version == api_version && k.kind == kind)
            .with_context(|| {
                format!("no kind {kind:?} is registered for version {api_version:?} on this server")
            })
    }
}

/// `pod/kubia`, `deployment.apps/web`: how kubectl names an object in its messages.
pub fn display_name(kind: &pb::Kind, name: &str) -> String {
    if kind.group.is_empty() {
        format!("{}/{name}", kind.singular)
    } else {
        format!("{}.{}/{name}", kind.singular, kind.group)
    }
}

/// The masters to talk to: `--server` / `RUDDER_SERVER`, else the CLI config, else the
/// default local master.
fn servers(target: &Target) -> anyhow::Result<Vec<String>> {
    Ok(configured_servers(target)?.unwrap_or_else(|| vec!["127.0.0.1:2379".into()]))
}

/// The masters given by `--server` / `RUDDER_SERVER` or the CLI config; `None` if neither
/// names any.
pub fn configured_servers(target: &Target) -> anyhow::Result<Option<Vec<String>>> {
    if !target.server.is_empty() {
        return Ok(Some(
            target.server.iter().map(|s| strip_scheme(s)).collect(),
        ));
    }
    Ok(read_config(target)?.map(|config| config.servers.iter().map(|s| strip_scheme(s)).collect()))
}

/// TLS to the masters: the flags' files, else the CLI config's; `None`: plaintext.
/// A client of `servers` over `tls`, with the target's bearer token if it has one.
pub fn api_client(
    target: &Target,
    servers: Vec<String>,
    tls: Option<ClientTls>,
) -> anyhow::Result<ApiClient> {
    let Some(token) = &target.token else {
        return Ok(ApiClient::with_tls(servers, tls));
    };
    if tls.is_none() {
        bail!(
            "--token needs TLS to the masters: give --certificate-authority (a master without \
             TLS trusts every caller and takes no token, and a token sent in plaintext is \
             anyone's)"
        );
    }
    ApiClient::with_tls(servers, tls)
        .with_token(token)
        .map_err(|why| anyhow::anyhow!("--token: {why}"))
}

/// Refuses a token for a component that calls with a certificate (a node, a proxy).
pub fn no_token(target: &Target, component: &str) -> anyhow::Result<()> {
    if target.token.is_some() {
        bail!(
            "{component} calls the masters with its certificate (--client-certificate), not a \
             token: unset RUDDER_TOKEN or drop --token"
        );
    }
    Ok(())
}

pub fn client_tls(target: &Target) -> anyhow::Result<Option<ClientTls>> {
    let mut config = read_config(target)?.unwrap_or_default();
    if target.token.is_some() {
        if target.client_certificate.is_some() {
            bail!(
                "give a client certificate or a token, not both (a master takes the certificate)"
            );
        }
        // The token speaks for the caller: the config's certificate would be taken first.
        config.client_certificate = None;
        config.client_key = None;
    }
    // Field by field: a flag wins over the config's file.
    let ca = target
        .certificate_authority
        .clone()
        .or(config.certificate_authority);
    let cert = target
        .client_certificate
        .clone()
        .or(config.client_certificate);
    let key = target.client_key.clone().or(config.client_key);
    if ca.is_none() && cert.is_some() {
        bail!(
            "a client certificate needs the cluster CA's certificate to go with it: give \
             --certificate-authority"
        );
    }
    let Some(ca) = ca else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(Issued {
            cert_pem: read(&cert)?,
            key_pem: read(&key)?,
            // Not needed by a client: the server judges it.
            not_after: std::time::SystemTime::UNIX_EPOCH,
        }),
        _ => None,
    };
    Ok(Some(ClientTls {
        ca_pem: read(&ca)?,
        identity,
    }))
}

/// The CLI config (`--config`, `$RUDDER_CONFIG`, `~/.rudder/config`), if there is one.
pub fn read_config(target: &Target) -> anyhow::Result<Option<CliConfig>> {
    let path = config_path(target.config.as_ref());
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let config: CliConfig =
        serde_yaml::from_str(&text).with_context(|| format!("reading the CLI config {path:?}"))?;
    if config.servers.is_empty() {
        bail!("the CLI config {path:?} lists no servers");
    }
    Ok(Some(config))
}

fn strip_scheme(server: &str) -> String {
    server
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_come_from_flags_before_the_config_file() {
        let target = Target {
            server: vec!["http://127.0.0.1:1/".into(), "127.0.0.1:2".into()],
            ..Default::default()
        };
        assert_eq!(servers(&target).unwrap(), ["127.0.0.1:1", "127.0.0.1:2"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        write_config(
            &path,
            &CliConfig {
                servers: vec!["127.0.0.1:3".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let target = Target {
            config: Some(path),
            ..Default::default()
        };
        assert_eq!(servers(&target).unwrap(), ["127.0.0.1:3"]);
    }
}
