//! Which master leads what during a `rudder bench controllers` run: the Raft log (from the
//! members' own status) and the controllers and the scheduler (from their leases' holders),
//! and how a memory row says it (pure: [`leads_phrase`]).

use rudder_proto::client::ApiClient;
use rudder_proto::etcdserverpb::StatusRequest;

/// What a master leads, by master name: (`"Raft log"`, `"m1"`), ...
pub type Leaders = Vec<(&'static str, String)>;

/// Who leads the Raft log among `masters` (name, client address), then who holds the
/// controller manager's and the scheduler's leases; what cannot be read is left out.
pub async fn leaders(client: &ApiClient, masters: &[(String, String)]) -> Leaders {
    let mut leaders: Leaders = raft_leader(masters)
        .await
        .map(|name| ("Raft log", name))
        .into_iter()
        .collect();
    leaders.extend(lease_holders(client).await);
    leaders
}

/// The master whose own status says it leads Raft (it takes every write and keeps the
/// followers' replication buffers).
async fn raft_leader(masters: &[(String, String)]) -> Option<String> {
    for (name, endpoint) in masters {
        let Ok(mut client) = rudder_chaos::client::maintenance_with(endpoint, None).await else {
            continue;
        };
        let Ok(status) = client.status(StatusRequest {}).await else {
            continue;
        };
        let status = status.into_inner();
        if status.header.is_some_and(|h| h.member_id == status.leader) {
            return Some(name.clone());
        }
    }
    None
}

/// Which master holds the controller manager's and the scheduler's leases (holder
/// identities are `<master name>_<uuid>`).
async fn lease_holders(client: &ApiClient) -> Leaders {
    let leases = [
        ("controllers", "rudder-controller-manager"),
        ("scheduler", "rudder-scheduler"),
    ];
    let mut holders = Vec::new();
    for (what, lease) in leases {
        let Ok(object) = client.get_object("leases", "kube-system", lease).await else {
            continue;
        };
        let holder = object["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default();
        if let Some((master, _)) = holder.rsplit_once('_') {
            holders.push((what, master.to_owned()));
        }
    }
    holders
}

/// What `master` leads, as a memory row ends: `; leads the Raft log, the controllers and
/// the scheduler`, or nothing.
pub fn leads_phrase(master: &str, leaders: &Leaders) -> String {
    let leads: Vec<&str> = leaders
        .iter()
        .filter(|(_, holder)| holder == master)
        .map(|(what, _)| *what)
        .collect();
    match leads.split_last() {
        None => String::new(),
        Some((last, [])) => format!("; leads the {last}"),
        Some((last, rest)) => format!("; leads the {} and the {last}", rest.join(", the ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_names_what_its_master_leads_in_a_list() {
        let leaders: Leaders = vec![
            ("Raft log", "m1".into()),
            ("controllers", "m1".into()),
            ("scheduler", "m1".into()),
        ];
        assert_eq!(
            leads_phrase("m1", &leaders),
            "; leads the Raft log, the controllers and the scheduler"
        );
        assert_eq!(leads_phrase("m2", &leaders), "");
        let split: Leaders = vec![("Raft log", "m3".into()), ("controllers", "m2".into())];
        assert_eq!(leads_phrase("m3", &split), "; leads the Raft log");
        assert_eq!(
            leads_phrase(
                "m2",
                &[("controllers", "m2".into()), ("scheduler", "m2".into())].into()
            ),
            "; leads the controllers and the scheduler"
        );
    }
}
