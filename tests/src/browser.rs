//! Headless Chromium (Debian's `chromium`, which `scripts/dev.sh test` installs) as the judge
//! of a page the project writes: a screenshot of it, and how many of its pixels have a
//! colour, so that a test sees what a person opening the page would.
//!
//! Chromium runs with a fresh profile and everything that would reach the network off, and
//! is ended by its PID if it has not finished in time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A PNG of `page` (a local file) as a `width` x `height` window shows it, written into
/// `dir`; `None` when Chromium is not installed.
pub fn screenshot(page: &Path, width: u32, height: u32, dir: &Path) -> Option<PathBuf> {
    if !Path::new(CHROMIUM).exists() {
        return None;
    }
    let png = dir.join("screenshot.png");
    let profile = dir.join("chromium-profile");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not write its screenshot within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
    }
    assert!(
        status.success() && png.exists(),
        "chromium failed ({status}): {said}"
    );
    Some(png)
}

/// The pixels of the PNG at `path` whose colour is `rgb`, give or take `tolerance` in each
/// channel (anti-aliased edges are blends).
pub fn pixels_of(path: &Path, rgb: [u8; 3], tolerance: u8) -> usize {
    let file = std::fs::File::open(path).expect("the screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("a PNG frame");
    let channels = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(channels)
        .filter(|pixel| pixel.len() >= 3 && (0..3).all(|c| pixel[c].abs_diff(rgb[c]) <= tolerance))
        .count()
}
