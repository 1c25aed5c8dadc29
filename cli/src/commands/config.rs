//! `rudder config kubeconfig`: a kubeconfig for the cluster the CLI talks to, so kubectl
//! and every Kubernetes client reach it. A kubeconfig names one server: the cluster's
//! endpoint when `rudder up` gave it one (it survives any one master's death), else the
//! first master given.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::session::{configured_servers, read_config, Target};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a kubeconfig for the cluster (for `KUBECONFIG=...`, kubectl and client libraries).
    Kubeconfig(KubeconfigArgs),
}

#[derive(Args, Debug)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    target: Target,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Kubeconfig(args) => {
            print!("{}", kubeconfig(&server_url(&args.target)?));
            Ok(())
        }
    }
}

/// The server a kubeconfig for `target` names, as a URL.
fn server_url(target: &Target) -> anyhow::Result<String> {
    if target.server.is_empty() {
        if let Some(endpoint) = read_config(target)?.and_then(|config| config.api_endpoint) {
            return Ok(format!("http://{endpoint}"));
        }
    }
    let servers = configured_servers(target)?.unwrap_or_else(|| vec!["127.0.0.1:2379".into()]);
    if servers.len() > 1 {
        eprintln!(
            "note: a kubeconfig names one server; this one names {}, the first of {} masters \
             (clients lose the API while it is down; `rudder up` gives its cluster an endpoint \
             that survives a master's death)",
            servers[0],
            servers.len()
        );
    }
    Ok(format!("http://{}", servers[0]))
}

/// A kubeconfig with one cluster, user and context, all named `rudder` (pure). Plain HTTP
/// and no credentials until the API serves TLS.
pub fn kubeconfig(server_url: &str) -> String {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "rudder", "cluster": { "server": server_url } }],
        "users": [{ "name": "rudder", "user": {} }],
        "contexts": [{ "name": "rudder", "context": { "cluster": "rudder", "user": "rudder" } }],
        "current-context": "rudder",
        "preferences": {},
    });
    serde_yaml::to_string(&config).expect("a JSON value is YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_the_server_in_its_one_context() {
        let text = kubeconfig("http://127.0.0.1:6443");
        let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(parsed["current-context"], "rudder");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:6443"
        );
        assert_eq!(parsed["contexts"][0]["context"]["cluster"], "rudder");
    }

    #[test]
    fn the_endpoint_rudder_up_wrote_wins_over_the_masters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "servers: [127.0.0.1:1, 127.0.0.1:2]\napi_endpoint: 127.0.0.1:6443\n",
        )
        .unwrap();
        let target = Target {
            server: Vec::new(),
            config: Some(path),
        };
        assert_eq!(server_url(&target).unwrap(), "http://127.0.0.1:6443");
        let given = Target {
            server: vec!["127.0.0.1:7".into()],
            config: None,
        };
        assert_eq!(server_url(&given).unwrap(), "http://127.0.0.1:7");
    }
}
