//! kubectl's `get` tables: the columns of every kind, plain and `-o wide`.

use serde_json::Value;

/// How to print a table.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// `-o wide`: the extra columns.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub with_namespace: bool,
}

/// The column headers for `kind` (e.g. "Pod").
pub fn headers(kind: &str, options: TableOptions) -> Vec<String> {
    let _ = (kind, options);
    vec!["NAME".into()]
}

/// One object's cells, in the order of [`headers`].
pub fn row(kind: &str, object: &Value, options: TableOptions, now: jiff::Timestamp) -> Vec<String> {
    let _ = (kind, object, options, now);
    vec![]
}

/// Aligns cells in columns as kubectl does (each column as wide as its widest cell, three
/// spaces between columns, no trailing spaces).
pub fn render(rows: &[Vec<String>]) -> String {
    let _ = rows;
    String::new()
}
