//! `rudder token`: join tokens, as `kubeadm token` keeps bootstrap tokens — `create` makes
//! one (a Secret in `kube-system`, through the API, so only who may create Secrets there
//! can) and prints it with the CA fingerprint of the cluster the CLI trusts; `list` shows
//! those not yet taken; `delete` withdraws one. A token is taken by its first join.

use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rudder_printers::age::human_age;
use rudder_printers::table::render;
use rudder_proto::api;
use rudder_proto::join_token::{
    kept_token, secret_name_of, token_secret, JoinToken, Role, TOKEN_NAMESPACE, TOKEN_SECRET_TYPE,
};

use crate::durations::parse_flag_duration;
use crate::session::{client_tls, Session, Target};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a join token: `rudder token create --role node` for `rudder node --token T`,
    /// `--role master` for `rudder server --join ADDR --token T`. Taken by its first join.
    Create(CreateArgs),
    /// The join tokens not yet taken.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Withdraw a join token (by its id, the six characters before the dot, or whole).
    Delete {
        /// The token's id, or the whole token.
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// What the token joins as: node or master.
    #[arg(long, default_value = "node")]
    role: String,
    /// How long the token may be used (e.g. 30m, 24h).
    #[arg(long, default_value = "24h")]
    ttl: String,
    /// What it is for, shown by `rudder token list`.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List { target } => list(target).await,
        TokenCommand::Delete { id, target } => delete(&id, target).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let role: Role = args.role.parse().map_err(anyhow::Error::msg)?;
    let ttl = parse_flag_duration("--ttl", &args.ttl, "h")?;
    let Some(tls) = client_tls(&args.target)? else {
        bail!(
            "join tokens are for a cluster with TLS: the token pins the cluster's CA, and \
             this CLI trusts none (give --certificate-authority, or use the config `rudder \
             up` wrote)"
        );
    };
    let token = JoinToken::generate(&tls.ca_pem).map_err(anyhow::Error::msg)?;
    let expires = SystemTime::now()
        .checked_add(ttl)
        .with_context(|| format!("--ttl {} reaches past what a clock can tell", args.ttl))?;
    let secret =
        token_secret(&token, role, expires, &args.description).map_err(anyhow::Error::msg)?;
    let session = Session::connect(&args.target).await?;
    session
        .client
        .create_object("secrets", TOKEN_NAMESPACE, &secret)
        .await
        .context("keeping the token in the cluster")?;
    println!("{token}");
    eprintln!(
        "a {} join token, valid for {} and taken by its first join: {}",
        role.as_str(),
        args.ttl,
        match role {
            Role::Node => "rudder node --name NAME --server MASTER:PORT --token TOKEN",
            Role::Master =>
                "rudder server --name NAME --data-dir DIR --join MASTER:PORT --token TOKEN",
        }
    );
    Ok(())
}

async fn list(target: Target) -> anyhow::Result<()> {
    let session = Session::connect(&target).await?;
    let listed = session
        .client
        .list(api::ListRequest {
            resource: "secrets".into(),
            namespace: TOKEN_NAMESPACE.into(),
            ..api::ListRequest::default()
        })
        .await?;
    let now = jiff::Timestamp::now();
    let mut rows = vec![["ID", "ROLES", "TTL", "EXPIRES", "DESCRIPTION"]
        .map(String::from)
        .to_vec()];
    for item in &listed.items {
        let secret: serde_json::Value = serde_json::from_slice(item)?;
        let Some(kept) = kept_token(&secret) else {
            continue;
        };
        let roles: Vec<&str> = kept.roles.iter().map(|role| role.as_str()).collect();
        let (ttl, expires) = match kept.expires {
            Some(at) if at <= now => ("<expired>".to_string(), at.to_string()),
            Some(at) => (human_age(now, at), at.to_string()),
            None => ("<forever>".to_string(), "<never>".to_string()),
        };
        rows.push(vec![
            kept.id,
            roles.join(","),
            ttl,
            expires,
            kept.description,
        ]);
    }
    if rows.len() == 1 {
        eprintln!("No join tokens (taken ones are gone).");
        return Ok(());
    }
    print!("{}", render(&rows));
    Ok(())
}

async fn delete(token: &str, target: Target) -> anyhow::Result<()> {
    let id = token
        .parse::<JoinToken>()
        .map(|token| token.id)
        .unwrap_or_else(|_| token.to_string());
    let session = Session::connect(&target).await?;
    let name = secret_name_of(&id);
    let secret = session
        .client
        .get_object("secrets", TOKEN_NAMESPACE, &name)
        .await
        .with_context(|| format!("join token {id}"))?;
    if secret["type"].as_str() != Some(TOKEN_SECRET_TYPE) {
        bail!("{TOKEN_NAMESPACE}/{name} is not a join token");
    }
    session
        .client
        .delete_object(api::DeleteRequest {
            resource: "secrets".into(),
            namespace: TOKEN_NAMESPACE.into(),
            name,
            grace_period_seconds: Some(0),
            ..api::DeleteRequest::default()
        })
        .await?;
    println!("join token {id} deleted");
    Ok(())
}
