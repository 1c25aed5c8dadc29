//! `rudder config kubeconfig`: a kubeconfig for the cluster the CLI talks to, so kubectl
//! and every Kubernetes client reach it. A kubeconfig names one server: the cluster's
//! endpoint when `rudder up` gave it one (it survives any one master's death), else the
//! first master given. Its user is the CLI's certificate, or `--token`'s token.

use clap::{Args, Subcommand};
use serde_json::json;

use base64::Engine;

use crate::session::{client_tls, configured_servers, read_config, Target};

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
            let credentials = credentials(&args.target)?;
            let url = server_url(&args.target, credentials.is_some())?;
            print!("{}", kubeconfig(&url, credentials.as_ref()));
            Ok(())
        }
    }
}

/// The server a kubeconfig for `target` names, as a URL (`https` with `tls`).
fn server_url(target: &Target, tls: bool) -> anyhow::Result<String> {
    let scheme = if tls { "https" } else { "http" };
    if target.server.is_empty() {
        if let Some(endpoint) = read_config(target)?.and_then(|config| config.api_endpoint) {
            return Ok(format!("{scheme}://{endpoint}"));
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
    Ok(format!("{scheme}://{}", servers[0]))
}

/// What a kubeconfig's user presents and its cluster trusts (PEM).
pub struct KubeconfigCredentials {
    pub ca_pem: String,
    pub user: KubeconfigUser,
}

/// Who a kubeconfig's user is: a client certificate, or a bearer token (`--token`).
pub enum KubeconfigUser {
    Certificate { cert_pem: String, key_pem: String },
    Token(String),
}

/// A kubeconfig with one cluster, user and context, all named `rudder` (pure): the cluster
/// CA and the user's certificate embedded when the cluster speaks TLS.
pub fn kubeconfig(server_url: &str, credentials: Option<&KubeconfigCredentials>) -> String {
    let data = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let (cluster, user) = match credentials {
        Some(tls) => (
            json!({ "server": server_url, "certificate-authority-data": data(&tls.ca_pem) }),
            match &tls.user {
                KubeconfigUser::Certificate { cert_pem, key_pem } => json!({
                    "client-certificate-data": data(cert_pem),
                    "client-key-data": data(key_pem),
                }),
                KubeconfigUser::Token(token) => json!({ "token": token }),
            },
        ),
        None => (json!({ "server": server_url }), json!({})),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "rudder", "cluster": cluster }],
        "users": [{ "name": "rudder", "user": user }],
        "contexts": [{ "name": "rudder", "context": { "cluster": "rudder", "user": "rudder" } }],
        "current-context": "rudder",
        "preferences": {},
    });
    serde_yaml::to_string(&config).expect("a JSON value is YAML")
}

/// The kubeconfig credentials of the CLI's TLS files (the CLI config's, or the flags').
fn credentials(target: &Target) -> anyhow::Result<Option<KubeconfigCredentials>> {
    let Some(tls) = client_tls(target)? else {
        return Ok(None);
    };
    let user = match (&target.token, tls.identity) {
        (Some(token), _) => KubeconfigUser::Token(token.clone()),
        (None, Some(identity)) => KubeconfigUser::Certificate {
            cert_pem: identity.cert_pem,
            key_pem: identity.key_pem,
        },
        (None, None) => anyhow::bail!(
            "a kubeconfig needs a client certificate (--client-certificate and --client-key) \
             or a token (--token)"
        ),
    };
    Ok(Some(KubeconfigCredentials {
        ca_pem: tls.ca_pem,
        user,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_the_server_in_its_one_context() {
        let text = kubeconfig("http://127.0.0.1:6443", None);
        let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(parsed["current-context"], "rudder");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:6443"
        );
        assert_eq!(parsed["contexts"][0]["context"]["cluster"], "rudder");
        assert_eq!(parsed["users"][0]["user"], serde_json::json!({}));

        let credentials = KubeconfigCredentials {
            ca_pem: "CA".into(),
            user: KubeconfigUser::Certificate {
                cert_pem: "CERT".into(),
                key_pem: "KEY".into(),
            },
        };
        let text = kubeconfig("https://127.0.0.1:6443", Some(&credentials));
        let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let cluster = &parsed["clusters"][0]["cluster"];
        assert_eq!(cluster["certificate-authority-data"], "Q0E=");
        assert_eq!(
            parsed["users"][0]["user"]["client-certificate-data"],
            "Q0VSVA=="
        );
        assert_eq!(parsed["users"][0]["user"]["client-key-data"], "S0VZ");

        let robot = KubeconfigCredentials {
            ca_pem: "CA".into(),
            user: KubeconfigUser::Token("t0ken".into()),
        };
        let text = kubeconfig("https://127.0.0.1:6443", Some(&robot));
        let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            parsed["users"][0]["user"],
            serde_json::json!({ "token": "t0ken" })
        );
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
            config: Some(path),
            ..Default::default()
        };
        assert_eq!(server_url(&target, false).unwrap(), "http://127.0.0.1:6443");
        assert_eq!(server_url(&target, true).unwrap(), "https://127.0.0.1:6443");
        let given = Target {
            server: vec!["127.0.0.1:7".into()],
            ..Default::default()
        };
        assert_eq!(server_url(&given, false).unwrap(), "http://127.0.0.1:7");
    }
}
