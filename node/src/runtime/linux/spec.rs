//! A container's OCI runtime config (`config.json`), pure: the pod's container spec over its
//! image's defaults, with Rudder's hardened defaults (runc's mounts and masked paths,
//! Docker's default capability set, no new privileges, a seccomp profile denying the system
//! calls a container has no business making).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use rudder_proto::objects::quantity::Quantity;
use serde_json::{json, Value};

/// What the image says to run, when the pod does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// A host directory or file mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Everything about one container attempt that is not in its spec.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    pub hostname: &'a str,
    pub rootfs: &'a Path,
    /// The pod's network namespace (a bind-mounted nsfs file).
    pub netns: &'a Path,
    /// Relative to each cgroup hierarchy's root, e.g. `/rudder/<container id>`.
    pub cgroups_path: &'a str,
    pub mounts: Vec<HostMount>,
    /// Values for `env[].valueFrom.fieldRef` (metadata.name, status.podIP, ...).
    pub fields: &'a [(&'a str, String)],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("container {container}: nothing to run (no command in the pod and no entrypoint or cmd in the image)")]
    NothingToRun { container: String },
    #[error("container {container}: {field} {value:?} is not a quantity")]
    BadQuantity {
        container: String,
        field: String,
        value: String,
    },
    #[error("container {container}: env {name}: {reason}")]
    Env {
        container: String,
        name: String,
        reason: String,
    },
}

/// The arguments the container runs (Kubernetes' rule): `command` replaces the image's
/// entrypoint, `args` its cmd; a `command` alone drops the image's cmd.
pub fn argv(container: &Container, image: &ImageDefaults) -> Vec<String> {
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut argv = command.clone();
            argv.extend(args.iter().flatten().cloned());
            argv
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut argv = image.entrypoint.clone();
            argv.extend(args.iter().cloned());
            argv
        }
        _ => {
            let mut argv = image.entrypoint.clone();
            argv.extend(image.cmd.iter().cloned());
            argv
        }
    }
}

/// `NAME=value` pairs: the image's, then `TERM` on a terminal if the image has none, then
/// the container's (which win).
pub fn environment(
    container: &Container,
    image: &ImageDefaults,
    fields: &[(&str, String)],
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // A terminal's type, as containerd sets it for a `tty: true` container: unless the
    // image or the container says its own.
    if container.tty == Some(true) && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                let Some(field) = &from.field_ref else {
                    return Err(SpecError::Env {
                        container: container.name.clone(),
                        name: var.name.clone(),
                        reason: "only value and valueFrom.fieldRef are supported on this node"
                            .into(),
                    });
                };
                fields
                    .iter()
                    .find(|(path, _)| *path == field.field_path)
                    .map(|(_, value)| value.clone())
                    .ok_or_else(|| SpecError::Env {
                        container: container.name.clone(),
                        name: var.name.clone(),
                        reason: format!("fieldRef {} is not supported", field.field_path),
                    })?
            }
            (Some(value), None) => value.clone(),
            (None, None) => String::new(),
        };
        env.retain(|(k, _)| *k != var.name);
        env.push((var.name.clone(), value));
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(
            0,
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
        );
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// cgroup values from the container's resources: memory limit in bytes, CPU quota from the
/// CPU limit (per 100 ms period), CPU shares from the CPU request (Kubernetes' formula).
pub fn resources(container: &Container) -> Result<Value, SpecError> {
    let quantity = |which: &str, name: &str| -> Result<Option<Quantity>, SpecError> {
        let map = container.resources.as_ref().and_then(|r| match which {
            "limits" => r.limits.as_ref(),
            _ => r.requests.as_ref(),
        });
        let Some(value) = map.and_then(|m| m.get(name)) else {
            return Ok(None);
        };
        Quantity::parse(&value.0)
            .map(Some)
            .map_err(|_| SpecError::BadQuantity {
                container: container.name.clone(),
                field: format!("resources.{which}.{name}"),
                value: value.0.clone(),
            })
    };
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(memory) = quantity("limits", "memory")? {
        let bytes = i64::try_from(memory.units()).unwrap_or(i64::MAX);
        // No swap: the limit is the limit.
        resources["memory"] = json!({ "limit": bytes, "swap": bytes });
    }
    let period: u64 = 100_000;
    let mut cpu = json!({});
    if let Some(limit) = quantity("limits", "cpu")? {
        let quota = (limit.millis() * i128::from(period) / 1000).max(1000);
        cpu["quota"] = json!(i64::try_from(quota).unwrap_or(i64::MAX));
        cpu["period"] = json!(period);
    }
    let request = quantity("requests", "cpu")?.or(quantity("limits", "cpu")?);
    if let Some(request) = request {
        let shares = (request.millis() * 1024 / 1000).max(2);
        cpu["shares"] = json!(u64::try_from(shares).unwrap_or(u64::MAX));
    }
    if cpu.as_object().is_some_and(|c| !c.is_empty()) {
        resources["cpu"] = cpu;
    }
    Ok(resources)
}

/// Docker's default capability set, which Kubernetes containers get unless told otherwise.
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The default set with the container's securityContext adds and drops (`ALL` drops all).
pub fn capabilities(container: &Container) -> Vec<String> {
    let named = |c: &String| {
        let upper = c.to_ascii_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let caps = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let drop: Vec<String> = caps
        .and_then(|c| c.drop.as_ref())
        .into_iter()
        .flatten()
        .map(named)
        .collect();
    let mut set: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
        let add = named(add);
        if !set.contains(&add) {
            set.push(add);
        }
    }
    set
}

/// System calls no container gets (they fail with EPERM): kernel modules, reboot, clocks,
/// swap, accounting, kexec, BPF and perf, keyrings, namespaces and mounts, handle-based
/// opens. Everything else is allowed; capabilities still apply on top.
const DENIED_SYSCALLS: [&str; 36] = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "move_mount",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "umount2",
    "unshare",
];

fn seccomp() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [{ "names": DENIED_SYSCALLS.as_slice(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }],
    })
}

fn runc_mounts() -> Vec<Value> {
    vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc" }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"] }),
    ]
}

/// The container's `config.json`.
pub fn config(
    container: &Container,
    image: &ImageDefaults,
    placement: &Placement,
) -> Result<Value, SpecError> {
    let args = argv(container, image);
    if args.is_empty() {
        return Err(SpecError::NothingToRun {
            container: container.name.clone(),
        });
    }
    let cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".into());
    let security = container.security_context.as_ref();
    let no_new_privileges = !security
        .and_then(|s| s.allow_privilege_escalation)
        .unwrap_or(false);
    let user = json!({
        "uid": security.and_then(|s| s.run_as_user).unwrap_or(0),
        "gid": security.and_then(|s| s.run_as_group).unwrap_or(0),
    });
    let caps = capabilities(container);
    let mut mounts = runc_mounts();
    for mount in &placement.mounts {
        let mut options = vec!["rbind", "rprivate"];
        if mount.read_only {
            options.push("ro");
        }
        mounts.push(json!({
            "destination": mount.container_path,
            "type": "bind",
            "source": mount.host_path,
            "options": options,
        }));
    }
    let read_only_root = security
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": args,
            "env": environment(container, image, placement.fields)?,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": no_new_privileges,
        },
        "root": { "path": placement.rootfs, "readonly": read_only_root },
        "hostname": placement.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": placement.cgroups_path,
            "resources": resources(container)?,
            "namespaces": [
                { "type": "pid" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
                { "type": "network", "path": placement.netns },
            ],
            "seccomp": seccomp(),
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(extra: Value) -> Container {
        let mut base = json!({ "name": "app", "image": "kubia" });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/bin/httpd".into(), "-f".into()],
            cmd: vec!["-p".into(), "8080".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            working_dir: "/www".into(),
        }
    }

    fn placement() -> Placement<'static> {
        static FIELDS: [(&str, String); 0] = [];
        Placement {
            hostname: "kubia-1",
            rootfs: Path::new("/r/rootfs"),
            netns: Path::new("/run/rudder/netns/p"),
            cgroups_path: "/rudder/c1",
            mounts: vec![HostMount {
                host_path: "/r/vol".into(),
                container_path: "/data".into(),
                read_only: true,
            }],
            fields: &FIELDS,
        }
    }

    #[test]
    fn command_and_args_override_the_image_as_kubernetes_does() {
        let image = image();
        assert_eq!(
            argv(&container(json!({})), &image),
            ["/bin/httpd", "-f", "-p", "8080"]
        );
        assert_eq!(
            argv(&container(json!({ "args": ["-p", "9090"] })), &image),
            ["/bin/httpd", "-f", "-p", "9090"]
        );
        assert_eq!(
            argv(&container(json!({ "command": ["/bin/sh"] })), &image),
            ["/bin/sh"]
        );
        assert_eq!(
            argv(
                &container(json!({ "command": ["/bin/sh"], "args": ["-c", "exit 3"] })),
                &image
            ),
            ["/bin/sh", "-c", "exit 3"]
        );
    }

    #[test]
    fn container_env_wins_over_the_image_and_field_refs_resolve() {
        let c = container(json!({ "env": [
            { "name": "MODE", "value": "pod" },
            { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        ]}));
        let fields = [("metadata.name", "kubia-1".to_string())];
        let env = environment(&c, &image(), &fields).unwrap();
        assert_eq!(env, ["PATH=/bin", "MODE=pod", "POD=kubia-1"]);
        let on_a_terminal = container(json!({ "tty": true }));
        let env = environment(&on_a_terminal, &image(), &fields).unwrap();
        assert_eq!(env, ["PATH=/bin", "MODE=image", "TERM=xterm"]);
        let own_term =
            container(json!({ "tty": true, "env": [{ "name": "TERM", "value": "vt100" }] }));
        let env = environment(&own_term, &image(), &fields).unwrap();
        assert_eq!(env, ["PATH=/bin", "MODE=image", "TERM=vt100"]);
        let image_term = ImageDefaults {
            env: vec!["TERM=linux".into()],
            ..image()
        };
        let env = environment(&on_a_terminal, &image_term, &fields).unwrap();
        assert_eq!(env[1..], ["TERM=linux"]);
        let c = container(json!({ "env": [
            { "name": "X", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } },
        ]}));
        let error = environment(&c, &image(), &fields).unwrap_err().to_string();
        assert!(error.contains("env X"), "{error}");
    }

    #[test]
    fn limits_become_cgroup_values() {
        let c = container(json!({ "resources": {
            "limits": { "memory": "64Mi", "cpu": "500m" },
            "requests": { "cpu": "250m" },
        }}));
        let r = resources(&c).unwrap();
        assert_eq!(r["memory"]["limit"], 64 * 1024 * 1024);
        assert_eq!(r["memory"]["swap"], 64 * 1024 * 1024);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["cpu"]["shares"], 256);
        let bad = container(json!({ "resources": { "limits": { "memory": "lots" } } }));
        assert!(resources(&bad)
            .unwrap_err()
            .to_string()
            .contains("resources.limits.memory"));
    }

    #[test]
    fn capabilities_start_from_the_default_set() {
        let caps = capabilities(&container(json!({})));
        assert!(caps.contains(&"CAP_NET_BIND_SERVICE".to_string()));
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        let caps = capabilities(&container(json!({ "securityContext": { "capabilities": {
            "drop": ["ALL"], "add": ["NET_ADMIN"],
        }}})));
        assert_eq!(caps, ["CAP_NET_ADMIN"]);
        let caps = capabilities(&container(
            json!({ "securityContext": { "capabilities": { "drop": ["KILL"] } } }),
        ));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
    }

    #[test]
    fn the_config_is_a_valid_oci_spec_with_hardened_defaults() {
        let config = config(&container(json!({})), &image(), &placement()).unwrap();
        let spec: oci_spec::runtime::Spec =
            serde_json::from_value(config.clone()).expect("a valid OCI runtime spec");
        assert_eq!(spec.hostname().as_deref(), Some("kubia-1"));
        assert_eq!(config["process"]["noNewPrivileges"], true);
        assert_eq!(config["process"]["cwd"], "/www");
        assert_eq!(
            config["linux"]["namespaces"][4]["path"],
            "/run/rudder/netns/p"
        );
        assert_eq!(
            config["linux"]["seccomp"]["defaultAction"],
            "SCMP_ACT_ALLOW"
        );
        let bind = config["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(bind["destination"], "/data");
        assert!(bind["options"].as_array().unwrap().contains(&json!("ro")));
        let nothing = ImageDefaults::default();
        assert!(matches!(
            super::config(&container(json!({})), &nothing, &placement()),
            Err(SpecError::NothingToRun { .. })
        ));
    }
}
