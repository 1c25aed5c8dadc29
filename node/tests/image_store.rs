//! The image store with the seeds' kubia image (built by scripts/build-kubia-image.sh):
//! import verifies every blob, names resolve like Docker's, layers unpack once.

use std::path::Path;
use std::process::Command;

use rudder_node::image::store::{ImageError, ImageStore};

fn kubia_layout(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-kubia-image.sh");
    let status = Command::new(script)
        .arg(out)
        .status()
        .expect("the build script runs");
    assert!(status.success());
}

#[test]
fn an_imported_layout_resolves_by_name_and_unpacks_its_layers_once() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("kubia");
    kubia_layout(&layout);
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    let imported = store.import(&layout, Some("luksa/kubia")).unwrap();
    assert_eq!(imported[0].reference, "docker.io/luksa/kubia:latest");
    // Any spelling of the name finds it; importing again changes nothing.
    let manifest = store.resolve("luksa/kubia:latest").unwrap();
    assert_eq!(
        store.import(&layout, Some("luksa/kubia")).unwrap()[0].manifest,
        manifest
    );
    assert_eq!(store.list().unwrap().len(), 1);
    let config = store.config(&manifest).unwrap();
    let entrypoint = config
        .config()
        .as_ref()
        .unwrap()
        .entrypoint()
        .clone()
        .unwrap();
    assert_eq!(entrypoint[0], "/bin/httpd");
    let layers = store.layers(&manifest).unwrap();
    assert_eq!(layers.len(), 1);
    assert!(layers[0].join("bin/busybox").is_file());
    assert!(layers[0].join("www/cgi-bin/index.cgi").is_file());
    assert_eq!(
        store.layers(&manifest).unwrap(),
        layers,
        "unpacked once, then reused"
    );
    assert!(matches!(
        store.resolve("nginx"),
        Err(ImageError::UnknownImage { .. })
    ));
}

#[test]
fn an_archive_imports_like_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("kubia");
    kubia_layout(&layout);
    let archive = dir.path().join("kubia.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    let imported = store.import(&archive, Some("kubia:v1")).unwrap();
    assert_eq!(imported[0].reference, "docker.io/library/kubia:v1");
}

#[test]
fn a_corrupt_blob_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("kubia");
    kubia_layout(&layout);
    // Truncate the biggest blob (the layer).
    let blobs = layout.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let bytes = std::fs::read(&biggest).unwrap();
    std::fs::write(&biggest, &bytes[..bytes.len() / 2]).unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    let error = store.import(&layout, Some("kubia")).unwrap_err();
    let name = biggest.file_name().unwrap().to_str().unwrap();
    assert!(matches!(error, ImageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(name), "{error}");
    assert!(
        store.list().unwrap().is_empty(),
        "nothing half-imported is listed"
    );
}

#[test]
fn pods_starting_together_all_get_the_whole_layer() {
    // Two stores on one directory stand for two node processes; four threads each.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("kubia");
    kubia_layout(&layout);
    let root = dir.path().join("store");
    let first = std::sync::Arc::new(ImageStore::open(&root).unwrap());
    first.import(&layout, Some("luksa/kubia")).unwrap();
    let second = std::sync::Arc::new(ImageStore::open(&root).unwrap());
    let manifest = first.resolve("luksa/kubia").unwrap();
    let unpackers: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let manifest = manifest.clone();
            std::thread::spawn(move || store.layers(&manifest))
        })
        .collect();
    for unpacker in unpackers {
        let layers = unpacker.join().unwrap().expect("every unpack succeeds");
        assert!(layers[0].join("bin/busybox").is_file(), "a whole layer");
        assert!(
            layers[0].join("www/cgi-bin/index.cgi").is_file(),
            "a whole layer"
        );
    }
    let leftovers = std::fs::read_dir(root.join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "no temporary unpack is left");
}
