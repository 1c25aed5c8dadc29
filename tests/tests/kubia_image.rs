//! The seeds' `kubia` demo image, built by `scripts/build-kubia-image.sh` from busybox-static:
//! a valid, reproducible OCI layout whose own binaries serve "You've hit <hostname>" on 8080.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn build(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-kubia-image.sh");
    let status = Command::new(script)
        .arg(out)
        .status()
        .expect("the build script runs");
    assert!(status.success(), "building the kubia image failed");
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("the blob exists");
    assert_eq!(
        format!("{:x}", Sha256::digest(&bytes)),
        hex,
        "blob {digest} is corrupt"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Kills the server by its PID when the test ends, pass or fail.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_kubia_image_is_reproducible_valid_and_answers_with_its_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second): (PathBuf, PathBuf) = (dir.path().join("a"), dir.path().join("b"));
    build(&first);
    build(&second);
    let index = std::fs::read(first.join("index.json")).unwrap();
    assert_eq!(
        index,
        std::fs::read(second.join("index.json")).unwrap(),
        "not reproducible"
    );

    // index → manifest → config and layer, every digest and size checked.
    let index = json(&index);
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let manifest_bytes = blob(&first, entry["digest"].as_str().unwrap());
    assert_eq!(entry["size"], manifest_bytes.len());
    let manifest = json(&manifest_bytes);
    let config = json(&blob(
        &first,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(
        config["config"]["ExposedPorts"]["8080/tcp"],
        serde_json::json!({})
    );
    let layer = &manifest["layers"][0];
    let layer_bytes = blob(&first, layer["digest"].as_str().unwrap());
    assert_eq!(layer["size"], layer_bytes.len());

    // Unpack the layer and run the image's own entrypoint in a chroot of it.
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let layer_path = dir.path().join("layer.tar.gz");
    std::fs::write(&layer_path, &layer_bytes).unwrap();
    let unpacked = Command::new("tar")
        .arg("xzf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let entrypoint: Vec<String> = config["config"]["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("8080", &format!("127.0.0.1:{port}"))
        })
        .collect();
    let _server = Server(
        Command::new("chroot")
            .arg(&root)
            .args(&entrypoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chroot runs (the tests run as root)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(error) => {
                assert!(Instant::now() < deadline, "kubia never listened: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        answer.contains(&format!("You've hit {}", hostname.trim())),
        "{answer}"
    );
}
