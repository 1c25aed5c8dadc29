//! A component's `/metrics` in tests: judged by Prometheus' promtool, and found where a
//! component started on its own says it serves them.

use std::process::Stdio;
use std::time::Duration;

use rudder_chaos::client::scrape;

/// Scrapes `endpoint`'s `/metrics` and has Prometheus' `promtool check metrics` judge it
/// (installed by `scripts/dev.sh test`); returns the text, or what is wrong with it.
pub async fn promtool_accepts(endpoint: &str) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let text = scrape(endpoint).await?;
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("running promtool: {error} (scripts/dev.sh test installs it)"))?;
    let mut input = promtool.stdin.take().expect("piped stdin");
    input
        .write_all(text.as_bytes())
        .await
        .map_err(|error| format!("writing to promtool: {error}"))?;
    drop(input);
    let judged = promtool
        .wait_with_output()
        .await
        .map_err(|error| format!("waiting for promtool: {error}"))?;
    if !judged.status.success() {
        return Err(format!(
            "promtool refuses {endpoint}/metrics: {}{}",
            String::from_utf8_lossy(&judged.stdout),
            String::from_utf8_lossy(&judged.stderr)
        ));
    }
    Ok(text)
}

/// Where a component started with `--metrics-bind-address 127.0.0.1:0` serves its metrics,
/// read from the line it prints (`...: metrics at http://ADDRESS/metrics`) within 30 s. The
/// rest of its output is read on (and dropped) so that its later lines find a reader.
pub async fn announced_metrics(stdout: tokio::process::ChildStdout) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, rest)) = line.split_once("metrics at http://") {
                return rest.trim_end_matches("/metrics").to_owned();
            }
        }
        panic!("the component ended its output without saying where its metrics are")
    })
    .await
    .expect("the component says where its metrics are within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}
