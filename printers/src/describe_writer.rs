//! The writer every describer writes with (kubectl's `PrefixWriter`) and the small helpers
//! they share. It imports none of the describers, so they can all import it.

use serde_json::Value;

use super::fields::{array_at, at, one_line, rfc1123z, str_at, string_map, text_at, time_at};
use super::tabwriter;

/// kubectl's `PrefixWriter`: lines of tab-separated cells, indented two spaces per level.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// Text already aligned (before the last [`Writer::flush`]).
    done: String,
    /// Lines still to align.
    text: String,
}

impl Writer {
    /// Aligns what was written so far on its own, as Go's `tabwriter.Flush`: later lines no
    /// longer share its columns.
    pub(crate) fn flush(&mut self) {
        self.done.push_str(&tabwriter::align_text(&self.text, 2));
        self.text.clear();
    }

    /// The whole aligned text.
    pub(crate) fn finish(mut self) -> String {
        self.flush();
        self.done
    }

    /// Whether the last line written is indented (part of a nested section or table).
    pub(crate) fn ends_indented(&self) -> bool {
        self.text
            .trim_end_matches('\n')
            .rsplit('\n')
            .next()
            .is_some_and(|line| line.starts_with(' '))
    }

    /// `Key:<tab>value`; the value is trimmed and kept on one line.
    pub(crate) fn field(&mut self, level: usize, key: &str, value: &str) {
        self.cells(level, &[&format!("{key}:"), &one_line(value)]);
    }

    /// A heading with nothing after it (`Containers:`); it starts new column blocks.
    pub(crate) fn heading(&mut self, level: usize, key: &str) {
        self.line(level, &format!("{key}:"));
    }

    /// Free text at `level`, without cells.
    pub(crate) fn line(&mut self, level: usize, text: &str) {
        self.text.push_str(&"  ".repeat(level));
        self.text.push_str(&one_line(text));
        self.text.push('\n');
    }

    /// Text at `level` keeping its own indentation (a block of a multi-line value).
    pub(crate) fn raw_line(&mut self, level: usize, text: &str) {
        self.text.push_str(&"  ".repeat(level));
        let text = text.trim_end().replace('\t', "    ");
        self.text.push_str(&text.replace(['\n', '\r'], " "));
        self.text.push('\n');
    }

    /// Appends lines written elsewhere, unaligned.
    pub(crate) fn push_lines(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// The lines written and not yet aligned.
    pub(crate) fn into_lines(self) -> String {
        self.text
    }

    /// Cells joined by tabs at `level`. Spaces inside cells are kept: kubectl's tables pad some
    /// cells with a trailing space, which widens their column.
    pub(crate) fn cells(&mut self, level: usize, cells: &[&str]) {
        self.text.push_str(&"  ".repeat(level));
        let cells: Vec<String> = cells
            .iter()
            .map(|c| c.replace(['\t', '\n', '\r'], " "))
            .collect();
        self.text.push_str(&cells.join("\t"));
        self.text.push('\n');
    }

    /// `Key:<tab>Fri, 29 Apr 2016 14:12:33 +0000` for the time at `path`, `<unknown>` without.
    pub(crate) fn time(&mut self, level: usize, key: &str, v: &Value, path: &[&str]) {
        let text = time_at(v, path).map_or_else(|| "<unknown>".into(), rfc1123z);
        self.field(level, key, &text);
    }

    /// kubectl's `printLabelsMultiline`: `k=v` sorted, one per line under the first, `<none>`.
    pub(crate) fn labels(&mut self, level: usize, key: &str, v: &Value, path: &[&str]) {
        let pairs: Vec<String> = string_map(v, path)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.multiline(level, key, &pairs);
    }

    /// `Key:<tab>first`, then each further value in the value column; `<none>` when empty.
    pub(crate) fn multiline(&mut self, level: usize, key: &str, values: &[String]) {
        let Some((first, rest)) = values.split_first() else {
            self.field(level, key, "<none>");
            return;
        };
        self.field(level, key, first);
        for value in rest {
            self.cells(level, &["", value]);
        }
    }
}

/// The controlling owner as `Kind/name` (kubectl's `Controlled By:`), if any.
pub(crate) fn controlled_by(object: &Value) -> Option<String> {
    array_at(object, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| at(o, &["controller"]).and_then(Value::as_bool) == Some(true))
        .map(|o| format!("{}/{}", text_at(o, &["kind"]), text_at(o, &["name"])))
}

/// The non-empty string at `path`, if any.
pub(crate) fn present<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    str_at(v, path).filter(|s| !s.is_empty())
}
