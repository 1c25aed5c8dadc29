//! A [`Ruleset`] as `nft -f` scripts, pure: [`full`] replaces the node's table — and
//! nothing else — in one transaction; [`changes`] turns the table that is into the one
//! that should be, touching only what differs (kube-proxy's partial sync); [`remove`]
//! takes the table away.
//!
//! A partial script runs in this order, so that nothing is deleted while something still
//! refers to it: stale map elements out; chains that change or go flushed (their rules
//! drop their references); chains that go deleted; affinity sets that go or change
//! deleted, then (re)declared; new chains declared; rules written; new elements in. A
//! failed script changes nothing (one transaction), and the proxy then writes the whole
//! table again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::ruleset::{base, ProxyConfig, Ruleset};

/// The script that replaces the table with `rules`.
pub fn full(config: &ProxyConfig, rules: &Ruleset) -> String {
    let table = &config.table;
    let mut out = String::new();
    // `add` first so that `delete` never fails on a first sync; then the whole table anew.
    let _ = writeln!(out, "add table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    out.push_str(&base(config));
    for (name, declaration) in &rules.sets {
        let _ = writeln!(out, "  set {name} {{ {declaration} }}");
    }
    for (name, chain_rules) in &rules.chains {
        let _ = writeln!(out, "  chain {name} {{");
        for rule in chain_rules {
            let _ = writeln!(out, "    {rule}");
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    for (set, elements) in &rules.elements {
        add_elements(&mut out, table, set, elements.iter());
    }
    out
}

/// The script that turns `before` into `after` in `table`, or `None` when they are the same.
pub fn changes(table: &str, before: &Ruleset, after: &Ruleset) -> Option<String> {
    if before == after {
        return None;
    }
    let mut out = String::new();
    // Elements: what only `before` has goes (a map element by its key), what only
    // `after` has comes in at the end.
    let no_elements = BTreeSet::new();
    let sets: BTreeSet<&&str> = before
        .elements
        .keys()
        .chain(after.elements.keys())
        .collect();
    let mut added = Vec::new();
    for set in sets {
        let old = before.elements.get(*set).unwrap_or(&no_elements);
        let new = after.elements.get(*set).unwrap_or(&no_elements);
        let gone: Vec<&str> = old.difference(new).map(|e| key(e)).collect();
        if !gone.is_empty() {
            let _ = writeln!(
                out,
                "delete element ip {table} {set} {{ {} }}",
                gone.join(", ")
            );
        }
        added.push((*set, new.difference(old).collect::<Vec<_>>()));
    }
    // Affinity sets whose declaration changes are made anew, and so are the chains that
    // use them.
    let sets_gone: Vec<&String> = changed_or_gone(&before.sets, &after.sets);
    let sets_new: Vec<&String> = changed_or_new(&before.sets, &after.sets);
    let remade_set = |rules: &Vec<String>| {
        sets_gone
            .iter()
            .any(|set| rules.iter().any(|rule| rule.contains(&format!("@{set} "))))
    };
    let chains_gone: Vec<&String> = before
        .chains
        .keys()
        .filter(|name| !after.chains.contains_key(*name))
        .collect();
    let rewritten: Vec<(&String, &Vec<String>)> = after
        .chains
        .iter()
        .filter(|(name, rules)| match before.chains.get(*name) {
            Some(old) => old != *rules || remade_set(old),
            None => false,
        })
        .collect();
    let chains_new: Vec<(&String, &Vec<String>)> = after
        .chains
        .iter()
        .filter(|(name, _)| !before.chains.contains_key(*name))
        .collect();
    for name in chains_gone
        .iter()
        .copied()
        .chain(rewritten.iter().map(|(name, _)| *name))
    {
        let _ = writeln!(out, "flush chain ip {table} {name}");
    }
    for name in &chains_gone {
        let _ = writeln!(out, "delete chain ip {table} {name}");
    }
    for name in &sets_gone {
        let _ = writeln!(out, "delete set ip {table} {name}");
    }
    for name in &sets_new {
        let _ = writeln!(out, "add set ip {table} {name} {{ {} }}", after.sets[*name]);
    }
    for (name, _) in &chains_new {
        let _ = writeln!(out, "add chain ip {table} {name}");
    }
    for (name, rules) in chains_new.iter().chain(&rewritten) {
        for rule in rules.iter() {
            let _ = writeln!(out, "add rule ip {table} {name} {rule}");
        }
    }
    for (set, elements) in added {
        add_elements(&mut out, table, set, elements.into_iter());
    }
    Some(out)
}

/// The script that removes the table (a node reset, or the proxy stopping for good).
pub fn remove(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

fn add_elements<'a>(
    out: &mut String,
    table: &str,
    set: &str,
    elements: impl Iterator<Item = &'a String>,
) {
    let elements: Vec<&str> = elements.map(String::as_str).collect();
    if !elements.is_empty() {
        let _ = writeln!(
            out,
            "add element ip {table} {set} {{ {} }}",
            elements.join(", ")
        );
    }
}

/// A set or map element's key (what `delete element` names).
fn key(element: &str) -> &str {
    element.split(" : ").next().unwrap_or(element)
}

fn changed_or_gone<'a>(
    before: &'a BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<&'a String> {
    before
        .iter()
        .filter(|(name, declaration)| after.get(*name) != Some(*declaration))
        .map(|(name, _)| name)
        .collect()
}

fn changed_or_new<'a>(
    before: &BTreeMap<String, String>,
    after: &'a BTreeMap<String, String>,
) -> Vec<&'a String> {
    changed_or_gone(after, before)
}

#[cfg(test)]
#[path = "script_tests.rs"]
mod tests;
