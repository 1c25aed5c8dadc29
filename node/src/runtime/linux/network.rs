//! Pod networking on one node, over netlink (rtnetlink): a bridge holding the first address of
//! the node's pod CIDR, one network namespace per pod (a bind-mounted nsfs file) with a veth
//! whose host end is on the bridge and whose pod end is `eth0` with the pod's address, and
//! `unreachable` routes for the whole cluster and service ranges so that nothing meant for
//! them leaves the machine.
//!
//! Removing links and routes is [`super::machine_network`]; the lock nodes on one machine
//! take turns with is [`super::machine_lock`].
//!
//! Namespaces are entered per thread (`unshare`/`setns` on a short-lived thread), never by
//! the process: the kubelet's other threads stay where they are.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo, LinkMessage, State,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("pod CIDR {0:?} is not an IPv4 range like 10.244.1.0/24")]
    BadCidr(String),
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("{action}: {source}")]
    System {
        action: String,
        source: nix::errno::Errno,
    },
    #[error("{action}: {source}")]
    Netlink {
        action: String,
        source: rtnetlink::Error,
    },
    #[error("{action}: {interface} vanished")]
    Vanished {
        action: &'static str,
        interface: String,
    },
    #[error("a {0} thread panicked")]
    Panicked(&'static str),
    #[error(
        "the br_netfilter kernel module is not loaded and could not be loaded ({0}): run \
         `modprobe br_netfilter` (package kmod) as root; without it a pod cannot reach a \
         Service whose endpoint is on its own node"
    )]
    BridgeNetfilter(String),
    #[error(
        "{interface} is still not {condition} {LINK_READY_WITHIN:?} after it was made: the \
         kernel's link watcher has not got to it (is the machine overloaded? see `dmesg`)"
    )]
    NotReady {
        interface: String,
        condition: &'static str,
    },
}

fn io_failed(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let action = action.into();
    move |source| NetworkError::Io { action, source }
}

fn sys_failed(action: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> NetworkError {
    let action = action.into();
    move |source| NetworkError::System { action, source }
}

pub(super) fn netlink_failed(
    action: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let action = action.into();
    move |source| NetworkError::Netlink { action, source }
}

fn vanished(action: &'static str, interface: &str) -> NetworkError {
    NetworkError::Vanished {
        action,
        interface: interface.to_string(),
    }
}

/// An IPv4 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        let bad = || NetworkError::BadCidr(text.to_string());
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(address) & mask),
            prefix,
        })
    }

    /// Whether `other` lies wholly inside this range.
    pub fn covers(self, other: Cidr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        other.prefix >= self.prefix && u32::from(other.network) & mask == u32::from(self.network)
    }

    /// The first host address: the node's bridge, the pods' gateway.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

/// Interface names are at most 15 bytes: a prefix and a hash of what they belong to.
pub fn interface_name(prefix: &str, owner: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(owner.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// One node's pod network.
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    pub bridge: String,
    pub pod_cidr: Cidr,
    /// Where pod network namespaces are bind-mounted.
    pub netns_dir: PathBuf,
    /// Ranges that must never leave the machine and that the machine itself never reaches
    /// (the cluster CIDR: every pod range is routed to its node's bridge).
    pub unreachable: Vec<Cidr>,
    /// Ranges the machine reaches only through the proxy's translation (the service range and
    /// the load-balancer pool): routed to [`SERVICE_DEVICE`], a bridge with no ports, so a
    /// connection to them reaches nftables (an `unreachable` route fails it first), and an
    /// address nothing answers on dies here.
    pub service_ranges: Vec<Cidr>,
    /// A network of namespaces that reach each other and the machine only (the chaos
    /// runner's members): no default route in them, no forwarding off the bridge, no
    /// bridge netfilter, no service device.
    pub closed: bool,
}

/// The machine-wide device the service ranges are routed to (shared by every node on the
/// machine, never removed: another node may route through it).
pub const SERVICE_DEVICE: &str = "rudder-svc";

/// How long a port-forward's connection inside a pod may take (on its own loopback, it is
/// answered at once or refused; a full accept queue is what makes it wait).
const POD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs netlink requests on a fresh current-thread runtime on a thread of its own (callers
/// may be inside another runtime), in the network namespace of the calling thread.
pub(super) fn with_netlink<T: Send>(
    work: impl AsyncFnOnce(Handle) -> Result<T, NetworkError> + Send,
) -> Result<T, NetworkError> {
    // A thread spawned here starts in the process's namespace, not the caller's: enter the
    // caller's first.
    let namespace = File::open("/proc/thread-self/ns/net")
        .map_err(io_failed("opening this thread's network namespace"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&namespace, CloneFlags::CLONE_NEWNET)
                    .map_err(sys_failed("entering the network namespace"))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(io_failed("starting a netlink runtime"))?;
                runtime.block_on(async {
                    let (connection, handle, _) =
                        rtnetlink::new_connection().map_err(io_failed("opening netlink"))?;
                    tokio::spawn(connection);
                    work(handle).await
                })
            })
            .join()
            .unwrap_or(Err(NetworkError::Panicked("netlink")))
    })
}

/// Runs `work` on a new thread that first entered the network namespace at `netns`; a
/// process it spawns starts in that namespace too.
pub fn in_namespace<T: Send + 'static>(
    netns: &Path,
    work: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let file = File::open(&netns).map_err(io_failed(format!("opening {}", netns.display())))?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(sys_failed(format!("entering {}", netns.display())))?;
        work()
    })
    .join()
    .unwrap_or(Err(NetworkError::Panicked("network")))
}

pub(super) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers "no such device" for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => Ok(None),
        Err(e) => Err(netlink_failed(format!("looking up {name}"))(e)),
    }
}

/// How long a new link may take to carry packets before making a pod's network fails.
const LINK_READY_WITHIN: Duration = Duration::from_secs(10);

/// Waits until the link at `index` is `condition` as `ready` judges its attributes.
///
/// A link just set up drops what it is given until the kernel's link watcher, which runs
/// asynchronously (up to a second late when the machine is busy), activates it: a bridge
/// port stays disabled and a device keeps its no-op queue. A pod's first packets would be
/// lost, and its first connection would wait out a retransmission.
async fn wait_for_link(
    handle: &Handle,
    index: u32,
    what: &str,
    condition: &'static str,
    ready: fn(&[LinkAttribute]) -> bool,
) -> Result<(), NetworkError> {
    let began = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let mut links = handle.link().get().match_index(index).execute();
        let link: Option<LinkMessage> = links
            .try_next()
            .await
            .map_err(netlink_failed(format!("looking up {what}")))?;
        let link = link.ok_or_else(|| vanished("waiting for the link", what))?;
        if ready(&link.attributes) {
            return Ok(());
        }
        if began.elapsed() >= LINK_READY_WITHIN {
            return Err(NetworkError::NotReady {
                interface: what.to_string(),
                condition,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether the link's operational state is up (its queue is active).
fn operationally_up(attributes: &[LinkAttribute]) -> bool {
    attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
}

/// Whether the link is a bridge port that forwards.
fn forwarding_port(attributes: &[LinkAttribute]) -> bool {
    let infos = attributes.iter().filter_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    });
    infos.flatten().any(|info| match info {
        LinkInfo::PortData(InfoPortData::BridgePort(port)) => port
            .iter()
            .any(|p| matches!(p, InfoBridgePort::State(BridgePortState::Forwarding))),
        _ => false,
    })
}

/// Adds `route` for `range`, or replaces the one there (`to`: where it leads, for errors).
async fn replace_route(
    handle: &Handle,
    route: RouteMessageBuilder<Ipv4Addr>,
    range: Cidr,
    to: &str,
) -> Result<(), NetworkError> {
    handle
        .route()
        .add(route.build())
        .replace()
        .execute()
        .await
        .map_err(netlink_failed(format!(
            "routing {}/{} to {to}",
            range.network, range.prefix
        )))
}

/// br_netfilter, loaded if it is not.
fn ensure_bridge_netfilter() -> Result<(), NetworkError> {
    if Path::new("/proc/sys/net/bridge").exists() {
        return Ok(());
    }
    let loaded = std::process::Command::new("modprobe")
        .arg("br_netfilter")
        .output();
    match loaded {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(NetworkError::BridgeNetfilter(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )),
        Err(error) => Err(NetworkError::BridgeNetfilter(format!("modprobe: {error}"))),
    }
}

/// The index of the bridge `name`, created if missing.
async fn ensure_bridge_device(handle: &Handle, name: &str) -> Result<u32, NetworkError> {
    if let Some(index) = link_index(handle, name).await? {
        return Ok(index);
    }
    let added = handle
        .link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await;
    // Another node on this machine may have made the shared one meanwhile.
    match (added, link_index(handle, name).await?) {
        (_, Some(index)) => Ok(index),
        (Err(error), None) => Err(netlink_failed(format!("creating bridge {name}"))(error)),
        (Ok(()), None) => Err(vanished("creating the bridge", name)),
    }
}

/// The bridge `name` (created if missing) with `cidr`'s gateway address, up.
async fn ensure_addressed_bridge(
    handle: &Handle,
    name: &str,
    cidr: Cidr,
) -> Result<(), NetworkError> {
    let index = ensure_bridge_device(handle, name).await?;
    handle
        .address()
        .add(index, cidr.gateway().into(), cidr.prefix)
        .replace()
        .execute()
        .await
        .map_err(netlink_failed(format!("addressing {name}")))?;
    set_up(handle, index, name).await
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

async fn set_up(handle: &Handle, index: u32, what: &str) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink_failed(format!("bringing {what} up")))
}

impl NodeNetwork {
    pub fn new(
        node_name: &str,
        pod_cidr: &str,
        netns_dir: PathBuf,
        unreachable: &[&str],
        service_ranges: &[&str],
    ) -> Result<Self, NetworkError> {
        let parse = |ranges: &[&str]| {
            ranges
                .iter()
                .map(|c| Cidr::parse(c))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            bridge: interface_name("rb", node_name),
            pod_cidr: Cidr::parse(pod_cidr)?,
            netns_dir,
            unreachable: parse(unreachable)?,
            service_ranges: parse(service_ranges)?,
            closed: false,
        })
    }

    /// The bridge (created if missing) with the gateway address, up, forwarding; the
    /// unreachable routes; the service ranges routed to [`SERVICE_DEVICE`]. Idempotent.
    /// A [`NodeNetwork::closed`] one gets the bridge and its address only, and forwards
    /// nothing.
    pub fn ensure_bridge(&self) -> Result<(), NetworkError> {
        if self.closed {
            return self.ensure_closed_bridge();
        }
        std::fs::create_dir_all(&self.netns_dir)
            .map_err(io_failed(format!("creating {}", self.netns_dir.display())))?;
        let _shared = super::machine_lock::lock().map_err(io_failed(format!(
            "taking {}",
            super::machine_lock::MACHINE_LOCK
        )))?;
        let bridge = self.bridge.clone();
        let cidr = self.pod_cidr;
        let unreachable = self.unreachable.clone();
        let service_ranges = self.service_ranges.clone();
        with_netlink(async move |handle| {
            ensure_addressed_bridge(&handle, &bridge, cidr).await?;
            for range in unreachable {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(range.network, range.prefix)
                    .kind(RouteType::Unreachable);
                replace_route(&handle, route, range, "unreachable").await?;
            }
            let device = ensure_bridge_device(&handle, SERVICE_DEVICE).await?;
            set_up(&handle, device, SERVICE_DEVICE).await?;
            for range in service_ranges {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(range.network, range.prefix)
                    .output_interface(device);
                replace_route(&handle, route, range, SERVICE_DEVICE).await?;
            }
            Ok(())
        })?;
        // Pods' packets to other nodes' pods and to the machine are forwarded from here; and
        // the machine's own connections to 127.0.0.1:NodePort, translated to a pod, may
        // leave through this bridge with their loopback source (the proxy masquerades them,
        // and its table drops 127.0.0.0/8 arriving from anywhere else: CVE-2020-8558).
        for (setting, value) in [("forwarding", "1"), ("route_localnet", "1")] {
            let path = format!("/proc/sys/net/ipv4/conf/{}/{setting}", self.bridge);
            std::fs::write(&path, value).map_err(io_failed(format!("writing {path}")))?;
        }
        // A pod's connection to a Service whose endpoint shares its bridge is answered
        // across the bridge, not through the machine's routing: only a bridge that hands
        // its frames to the ip hooks lets conntrack translate the answer back. Set on this
        // bridge alone, not machine-wide (bridge-nf-call-iptables).
        ensure_bridge_netfilter()?;
        let path = format!("/sys/class/net/{}/bridge/nf_call_iptables", self.bridge);
        std::fs::write(&path, "1").map_err(io_failed(format!("writing {path}")))?;
        Ok(())
    }

    fn ensure_closed_bridge(&self) -> Result<(), NetworkError> {
        std::fs::create_dir_all(&self.netns_dir)
            .map_err(io_failed(format!("creating {}", self.netns_dir.display())))?;
        let (bridge, cidr) = (self.bridge.clone(), self.pod_cidr);
        with_netlink(async move |handle| ensure_addressed_bridge(&handle, &bridge, cidr).await)?;
        let forwarding = format!("/proc/sys/net/ipv4/conf/{}/forwarding", self.bridge);
        std::fs::write(&forwarding, "0").map_err(io_failed(format!("writing {forwarding}")))?;
        // With br_netfilter loaded (by a node), a new bridge hands its frames to the
        // machine's ip hooks, whose forward policy is not ours to meet.
        let hooks = format!("/sys/class/net/{}/bridge/nf_call_iptables", self.bridge);
        if Path::new(&hooks).exists() {
            std::fs::write(&hooks, "0").map_err(io_failed(format!("writing {hooks}")))?;
        }
        Ok(())
    }

    pub fn netns_path(&self, pod: &str) -> PathBuf {
        self.netns_dir.join(pod)
    }

    /// A TCP connection to `port` on the pod's loopback, opened from inside its network
    /// namespace: a socket stays in the namespace it was made in, whichever thread uses it.
    /// IPv4's loopback first, then IPv6's (as containerd tries them), for a server that
    /// listens on only one.
    pub fn connect_in_pod(&self, pod: &str, port: u16) -> Result<TcpStream, NetworkError> {
        let netns = self.netns_path(pod);
        if !netns.exists() {
            return Err(NetworkError::Io {
                action: "entering the pod's network namespace".to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the pod's network is not set up (yet, or any more)",
                ),
            });
        }
        in_namespace(&netns, move || {
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let first = TcpStream::connect_timeout(&v4, POD_CONNECT_TIMEOUT);
            let refused =
                matches!(&first, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            if refused {
                let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
                if let Ok(connection) = TcpStream::connect_timeout(&v6, POD_CONNECT_TIMEOUT) {
                    return Ok(connection);
                }
            }
            first.map_err(io_failed(format!(
                "connecting to {v4} in the pod's network namespace"
            )))
        })
    }

    /// The pod's namespace with `eth0` at `ip`, routed through the bridge. Returns the
    /// namespace's path. A half-made sandbox is removed before an error is returned.
    pub fn add_pod(&self, pod: &str, ip: Ipv4Addr) -> Result<PathBuf, NetworkError> {
        let made = self.try_add_pod(pod, ip);
        if made.is_err() {
            let _ = self.remove_pod(pod);
        }
        made
    }

    fn try_add_pod(&self, pod: &str, ip: Ipv4Addr) -> Result<PathBuf, NetworkError> {
        let netns = self.netns_path(pod);
        create_namespace(&netns)?;
        let host_end = interface_name("rv", pod);
        let pod_end = interface_name("rp", pod);
        let namespace =
            File::open(&netns).map_err(io_failed(format!("opening {}", netns.display())))?;
        let bridge = self.bridge.clone();
        with_netlink(async |handle| {
            handle
                .link()
                .add(LinkVeth::new(&host_end, &pod_end).build())
                .execute()
                .await
                .map_err(netlink_failed(format!("creating veth {host_end}")))?;
            let peer = link_index(&handle, &pod_end)
                .await?
                .ok_or_else(|| vanished("creating the veth", &pod_end))?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(peer)
                        .setns_by_fd(namespace.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink_failed(format!("moving {pod_end} into the pod")))?;
            let host = link_index(&handle, &host_end)
                .await?
                .ok_or_else(|| vanished("creating the veth", &host_end))?;
            let bridge_index = link_index(&handle, &bridge)
                .await?
                .ok_or_else(|| vanished("attaching the veth", &bridge))?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(host)
                        .controller(bridge_index)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink_failed(format!("attaching {host_end} to {bridge}")))
        })?;
        let (prefix, gateway) = (self.pod_cidr.prefix, self.pod_cidr.gateway());
        let closed = self.closed;
        in_namespace(&netns, move || {
            with_netlink(async move |handle| {
                if let Some(lo) = link_index(&handle, "lo").await? {
                    set_up(&handle, lo, "lo").await?;
                }
                let eth = link_index(&handle, &pod_end)
                    .await?
                    .ok_or_else(|| vanished("configuring the pod", &pod_end))?;
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(eth).name("eth0").build())
                    .execute()
                    .await
                    .map_err(netlink_failed("naming eth0"))?;
                handle
                    .address()
                    .add(eth, ip.into(), prefix)
                    .execute()
                    .await
                    .map_err(netlink_failed(format!("giving eth0 {ip}")))?;
                set_up(&handle, eth, "eth0").await?;
                wait_for_link(&handle, eth, "eth0", "up", operationally_up).await?;
                if closed {
                    // The bridge's range only (eth0's own route): nothing else is reachable.
                    return Ok(());
                }
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .build();
                handle
                    .route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(netlink_failed("adding the default route"))
            })
        })?;
        with_netlink(async |handle| {
            let host = link_index(&handle, &host_end)
                .await?
                .ok_or_else(|| vanished("waiting for the link", &host_end))?;
            wait_for_link(&handle, host, &host_end, "forwarding", forwarding_port).await?;
            // The bridge is up once it has a forwarding port; until then what the machine
            // sends to its pods is dropped.
            let bridge_index = link_index(&handle, &bridge)
                .await?
                .ok_or_else(|| vanished("waiting for the link", &bridge))?;
            wait_for_link(&handle, bridge_index, &bridge, "up", operationally_up).await
        })?;
        Ok(netns)
    }

    /// Removes the pod's veth and namespace. Idempotent.
    pub fn remove_pod(&self, pod: &str) -> Result<(), NetworkError> {
        let host_end = interface_name("rv", pod);
        with_netlink(async |handle| {
            if let Some(index) = link_index(&handle, &host_end).await? {
                handle
                    .link()
                    .del(index)
                    .execute()
                    .await
                    .map_err(netlink_failed(format!("deleting {host_end}")))?;
            }
            Ok(())
        })?;
        let netns = self.netns_path(pod);
        if netns.exists() {
            // EINVAL: not mounted (a half-made sandbox); the file still goes.
            match umount2(&netns, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => return Err(sys_failed(format!("unmounting {}", netns.display()))(e)),
            }
            std::fs::remove_file(&netns)
                .map_err(io_failed(format!("removing {}", netns.display())))?;
        }
        Ok(())
    }

    /// Pod namespaces present (their names), e.g. to find leftovers.
    pub fn pod_namespaces(&self) -> Vec<String> {
        std::fs::read_dir(&self.netns_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// A new network namespace, kept alive by a bind mount at `path`.
fn create_namespace(path: &Path) -> Result<(), NetworkError> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        File::create(&path).map_err(io_failed(format!("creating {}", path.display())))?;
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys_failed("creating a network namespace"))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys_failed(format!("bind-mounting {}", path.display())))
    })
    .join()
    .unwrap_or(Err(NetworkError::Panicked("network")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_to_their_network_and_gateway() {
        let cidr = Cidr::parse("10.244.1.7/24").unwrap();
        assert_eq!(cidr.network, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert!(Cidr::parse("10.244.1.0").is_err());
        assert!(Cidr::parse("10.244.1.0/33").is_err());
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().prefix, 0);
    }

    #[test]
    fn a_range_covers_the_ranges_inside_it() {
        let cluster = Cidr::parse("10.244.96.0/22").unwrap();
        assert!(cluster.covers(Cidr::parse("10.244.97.0/24").unwrap()));
        assert!(cluster.covers(cluster));
        assert!(!cluster.covers(Cidr::parse("10.244.100.0/24").unwrap()));
        assert!(!cluster.covers(Cidr::parse("10.244.0.0/16").unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().covers(cluster));
    }

    #[test]
    fn interface_names_fit_the_kernel_limit_and_differ_per_owner() {
        let a = interface_name("rv", "3f1c2a9e-0000-4000-8000-000000000001");
        let b = interface_name("rv", "3f1c2a9e-0000-4000-8000-000000000002");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
    }
}
