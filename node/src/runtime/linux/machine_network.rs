//! What the nodes on one machine take apart together (`rudder node reset`): removing links
//! and the cluster range's unreachable route, over netlink as [`super::network`] is; the
//! lock they take turns with is [`super::machine_lock`].

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::RouteMessageBuilder;

use super::network::{link_index, netlink_failed, with_netlink, Cidr, NetworkError};

/// Deletes the links named `names` that exist (a reset node's veths and bridge).
pub fn delete_links(names: &[String]) -> Result<Vec<String>, NetworkError> {
    let names = names.to_vec();
    with_netlink(async move |handle| {
        let mut deleted = Vec::new();
        for name in names {
            if let Some(index) = link_index(&handle, &name).await? {
                handle
                    .link()
                    .del(index)
                    .execute()
                    .await
                    .map_err(netlink_failed(format!("deleting {name}")))?;
                deleted.push(name);
            }
        }
        Ok(deleted)
    })
}

/// The range of link `name`'s first IPv4 address (a node bridge's: its pod range), if the
/// link exists and has one.
pub fn link_range(name: &str) -> Result<Option<Cidr>, NetworkError> {
    let name = name.to_owned();
    with_netlink(async move |handle| {
        let Some(index) = link_index(&handle, &name).await? else {
            return Ok(None);
        };
        let mut addresses = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(netlink_failed(format!("listing {name}'s addresses")))?
        {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V4(address)) = attribute {
                    let text = format!("{address}/{}", message.header.prefix_len);
                    return Cidr::parse(&text).map(Some);
                }
            }
        }
        Ok(None)
    })
}

/// Deletes the `unreachable` routes whose range covers `range` (the cluster CIDR's, once
/// no node is left to need it); returns them as text.
pub fn delete_unreachable_routes_covering(range: Cidr) -> Result<Vec<String>, NetworkError> {
    with_netlink(async move |handle| {
        let mut routes = handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut covering = Vec::new();
        while let Some(route) = routes
            .try_next()
            .await
            .map_err(netlink_failed("listing routes".to_string()))?
        {
            if route.header.kind != RouteType::Unreachable {
                continue;
            }
            let destination = route
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(address)) => Some(*address),
                    _ => None,
                });
            let Some(destination) = destination else {
                continue;
            };
            let prefix = route.header.destination_prefix_length;
            let Ok(routed) = Cidr::parse(&format!("{destination}/{prefix}")) else {
                continue;
            };
            if routed.covers(range) {
                covering.push((route, routed));
            }
        }
        let mut deleted = Vec::new();
        for (route, routed) in covering {
            let text = format!("unreachable route {}/{}", routed.network, routed.prefix);
            handle
                .route()
                .del(route)
                .execute()
                .await
                .map_err(netlink_failed(format!("deleting the {text}")))?;
            deleted.push(text);
        }
        Ok(deleted)
    })
}

/// Whether any link's name starts with `prefix` (another node's bridge, say).
pub fn any_link_named_like(prefix: &str) -> Result<bool, NetworkError> {
    let prefix = prefix.to_owned();
    with_netlink(async move |handle| {
        let mut links = handle.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(netlink_failed("listing links".to_string()))?
        {
            let named = link.attributes.iter().any(|attribute| {
                matches!(attribute, LinkAttribute::IfName(name) if name.starts_with(&prefix))
            });
            if named {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::{unshare, CloneFlags};

    /// Runs `work` on a thread in a network namespace of its own.
    fn in_new_network<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare (root)");
            work()
        })
        .join()
        .expect("the namespaced thread")
    }

    fn ip(args: &str) -> String {
        let output = std::process::Command::new("ip")
            .args(args.split_whitespace())
            .output()
            .expect("ip runs");
        assert!(output.status.success(), "ip {args}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn the_unreachable_route_covering_a_bridge_range_goes_and_no_other() {
        in_new_network(|| {
            ip("link add rbtest type bridge");
            ip("addr add 10.244.97.1/24 dev rbtest");
            ip("route add unreachable 10.244.96.0/22");
            ip("route add unreachable 10.99.0.0/16");
            let range = link_range("rbtest").unwrap().expect("the bridge's range");
            assert_eq!(range, Cidr::parse("10.244.97.0/24").unwrap());
            assert_eq!(link_range("rbmissing").unwrap(), None);
            assert_eq!(
                delete_unreachable_routes_covering(range).unwrap(),
                ["unreachable route 10.244.96.0/22"]
            );
            let left = ip("route show type unreachable");
            assert!(!left.contains("10.244.96.0/22"), "{left}");
            assert!(left.contains("10.99.0.0/16"), "{left}");
        });
    }
}
