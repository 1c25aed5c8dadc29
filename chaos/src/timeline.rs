//! A run's report as one self-contained HTML page (`report.html` beside `report.json`): the
//! verdict and each check, the plan to replay, and a timeline — each member's faults as
//! bars on its row, and under them the operations answered in each quarter second, so a
//! stall after a fault shows as a gap. No script, no external file. Pure.

use std::fmt::Write;

use crate::inject::Injected;
use crate::report::{Report, Verdict, BUCKET_MS};
use crate::schedule::FaultKind;

const WIDTH: f64 = 960.0;
const ROW: f64 = 22.0;
const CHART: f64 = 80.0;

/// The page.
pub fn html(report: &Report) -> String {
    let plan = &report.plan;
    let mut page = String::new();
    let verdict = format!("{:?}", report.verdict).to_uppercase();
    let color = match report.verdict {
        Verdict::Pass => "#2a7d2a",
        Verdict::Fail => "#b3261e",
        Verdict::Unknown => "#8a6d00",
    };
    let _ = write!(
        page,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>chaos run {seed}: {verdict}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:left;\
         vertical-align:top}}.v{{font-weight:bold}}</style></head><body>\n\
         <h1>chaos run, seed {seed}: <span style=\"color:{color}\">{verdict}</span></h1>\n\
         <p>{masters} {target:?} members · {length:.0}s · faults {faults} · {clients} clients on \
         {keys} keys{planted} · replay with <code>rudder chaos replay report.json</code></p>\n",
        seed = plan.seed,
        masters = plan.masters,
        target = plan.target,
        length = plan.length_ms as f64 / 1000.0,
        faults = escape(
            &plan
                .faults
                .iter()
                .map(|kind| kind.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        clients = plan.clients,
        keys = plan.keys,
        planted = match plan.planted.is_empty() {
            true => String::new(),
            false => format!(" · planted: {}", escape(&plan.planted.join(", "))),
        },
    );
    page.push_str("<table><tr><th>check</th><th>verdict</th><th>detail</th></tr>\n");
    for check in &report.checks {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"v\">{}</td><td>{}</td></tr>",
            escape(&check.name),
            format!("{:?}", check.verdict).to_uppercase(),
            escape(&check.detail)
        );
    }
    page.push_str("</table>\n<h2>timeline</h2>\n");
    page.push_str(&svg(report));
    page.push_str(
        "\n<h2>faults</h2>\n<table><tr><th>kind</th><th>member</th><th>from</th><th>to</th>\
         <th>what it did</th></tr>\n",
    );
    for fault in &report.injected {
        let cut = match (&fault.sides, fault.dropped_packets, &fault.disk_effect) {
            (Some(sides), Some(dropped), _) => {
                format!("{} ({dropped} packets dropped)", escape(sides))
            }
            (_, _, Some(effect)) => escape(&format!(
                "{}: {}",
                fault.disk.map_or("disk", |disk| disk.name()),
                effect.describe()
            )),
            _ => match (fault.delay_ms, fault.delayed_packets) {
                (Some(ms), Some(held)) => format!("{held} packets held {ms} ms each"),
                _ => String::new(),
            },
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}{}</td><td>{:.1}s</td><td>{:.1}s</td><td>{cut}</td></tr>",
            fault.kind.name(),
            escape(&fault.member),
            if fault.was_leader { " (leader)" } else { "" },
            fault.started_ms as f64 / 1000.0,
            fault.ended_ms as f64 / 1000.0
        );
    }
    page.push_str("</table>\n");
    if !report.recovery.is_empty() {
        page.push_str(
            "<h2>recovery</h2>\n<p>From each fault to the first write asked after it and \
             answered.</p>\n<table><tr><th>fault</th><th>count</th><th>median</th>\
             <th>worst</th><th>no write answered</th></tr>\n",
        );
        for r in &report.recovery {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{} ms</td><td>{}</td></tr>",
                escape(&r.fault),
                r.count,
                r.median_ms,
                r.worst_ms,
                r.never
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str("</body></html>\n");
    page
}

/// Faults by member over time, and answers per bucket under them.
fn svg(report: &Report) -> String {
    let end = report.ended_ms.max(1) as f64;
    let x = |ms: u64| 60.0 + (ms as f64 / end) * (WIDTH - 60.0);
    let mut members: Vec<&str> = report.injected.iter().map(|f| f.member.as_str()).collect();
    members.sort();
    members.dedup();
    let rows = members.len() as f64;
    let height = rows * ROW + CHART + 30.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-size=\"12\">\n"
    );
    for (row, member) in members.iter().enumerate() {
        let y = row as f64 * ROW;
        let _ = writeln!(
            svg,
            "<text x=\"0\" y=\"{}\">{}</text>",
            y + 15.0,
            escape(member)
        );
        for fault in report.injected.iter().filter(|f| f.member == *member) {
            let _ = writeln!(svg, "{}", bar(fault, y, &x));
        }
    }
    let base = rows * ROW + CHART;
    let most = report
        .answered_per_bucket
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    for (n, answered) in report.answered_per_bucket.iter().enumerate() {
        let from = x(n as u64 * BUCKET_MS);
        let width = (x((n as u64 + 1) * BUCKET_MS) - from).max(1.0);
        let tall = *answered as f64 / most * (CHART - 10.0);
        let _ = writeln!(
            svg,
            "<rect class=\"answered\" x=\"{from:.1}\" y=\"{:.1}\" width=\"{width:.1}\" \
             height=\"{tall:.1}\" fill=\"#4a78c2\"><title>{answered} answered</title></rect>",
            base - tall
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"0\" y=\"{:.0}\">answers</text><text x=\"60\" y=\"{:.0}\">0s</text>\
         <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{:.1}s</text>",
        base - CHART / 2.0,
        base + 16.0,
        WIDTH,
        base + 16.0,
        end / 1000.0
    );
    svg.push_str("</svg>");
    svg
}

fn bar(fault: &Injected, y: f64, x: &impl Fn(u64) -> f64) -> String {
    let color = match fault.kind {
        FaultKind::Kill => "#b3261e",
        FaultKind::Pause => "#e08a00",
        FaultKind::Partition => "#6a3fb5",
        FaultKind::Disk => "#1f6f8b",
        FaultKind::NodeLoss => "#4d7c0f",
        FaultKind::Loss => "#0f766e",
        FaultKind::Delay => "#a16207",
    };
    let sides = match &fault.sides {
        Some(sides) => format!(", {}", escape(sides)),
        None => String::new(),
    };
    let from = x(fault.started_ms);
    let width = (x(fault.ended_ms) - from).max(2.0);
    format!(
        "<rect class=\"fault\" x=\"{from:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" \
         fill=\"{color}\"><title>{} {}{}{sides} {:.1}s–{:.1}s</title></rect>",
        y + 3.0,
        ROW - 6.0,
        fault.kind.name(),
        escape(&fault.member),
        if fault.was_leader { " (leader)" } else { "" },
        fault.started_ms as f64 / 1000.0,
        fault.ended_ms as f64 / 1000.0
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Check, Operations, Plan, Target};

    fn report() -> Report {
        let fault = |kind, member: &str, started_ms, ended_ms| {
            Injected::plain(kind, member, true, started_ms, ended_ms)
        };
        Report {
            plan: Plan {
                seed: 42,
                target: Target::Rudder,
                masters: 3,
                length_ms: 4_000,
                faults: vec![FaultKind::Kill, FaultKind::Pause],
                clients: 2,
                keys: 1,
                planted: vec!["stale-reads".into()],
                pods: false,
                objects: false,
            },
            schedule: vec![],
            injected: vec![
                fault(FaultKind::Kill, "m1", 1_000, 2_000),
                fault(FaultKind::Pause, "m2", 2_500, 3_000),
            ],
            crashes: vec![],
            incidents: vec![],
            ended_ms: 4_000,
            operations: Operations::default(),
            answered_per_bucket: vec![5, 9, 0, 4],
            checks: vec![Check {
                name: "linearizability".into(),
                verdict: Verdict::Fail,
                detail: "stuck at client 1's get (saw Some(\"<b>\"))".into(),
            }],
            verdict: Verdict::Fail,
            recovery: vec![crate::recovery::Recovery {
                fault: "kill of the leader".into(),
                count: 1,
                median_ms: 180,
                worst_ms: 180,
                never: 0,
            }],
            recovered_ms: vec![Some(180), None],
        }
    }

    #[test]
    fn the_page_shows_the_verdict_each_fault_and_each_bucket() {
        let page = html(&report());
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("seed 42: <span style=\"color:#b3261e\">FAIL</span>"));
        assert_eq!(page.matches("class=\"fault\"").count(), 2);
        assert_eq!(page.matches("class=\"answered\"").count(), 4);
        assert!(
            page.contains("<title>kill m1 (leader) 1.0s–2.0s</title>"),
            "{page}"
        );
        assert!(page.contains("rudder chaos replay report.json"));
        assert!(
            page.contains("<tr><td>kill of the leader</td><td>1</td><td>180 ms</td>"),
            "{page}"
        );
    }

    #[test]
    fn what_the_store_said_is_escaped() {
        let page = html(&report());
        assert!(page.contains("Some(&quot;&lt;b&gt;&quot;)"), "{page}");
        assert!(!page.contains("<b>"));
    }
}
