//! A [`Ruleset`] as `nft -f` scripts, pure: [`full`] replaces the node's table — and
//! nothing else — in one transaction; [`changes`] makes [`Edits`] to the table that is,
//! looking only at the Services edited and touching only what differs (kube-proxy's
//! partial sync); [`remove`] takes the table away.
//!
//! A partial script runs in this order, so that nothing is deleted while something still
//! refers to it: stale map elements out; chains that change or go flushed (their rules
//! drop their references); chains that go deleted; affinity sets that go or change
//! deleted, then (re)declared; new chains declared; rules written; new elements in. A
//! failed script changes nothing (one transaction), and the proxy then writes the whole
//! table again.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::ruleset::{base, key, Edits, Element, ProxyConfig, Ruleset, ServiceRules};

/// The script that replaces the table with `rules`.
pub fn full(config: &ProxyConfig, rules: &Ruleset) -> String {
    let table = &config.table;
    let mut out = String::new();
    // `add` first so that `delete` never fails on a first sync; then the whole table anew.
    let _ = writeln!(out, "add table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    out.push_str(&base(config));
    for service in rules.services().values() {
        for (name, declaration) in &service.sets {
            let _ = writeln!(out, "  set {name} {{ {declaration} }}");
        }
        for (name, chain_rules) in &service.chains {
            let _ = writeln!(out, "  chain {name} {{");
            for rule in chain_rules {
                let _ = writeln!(out, "    {rule}");
            }
            out.push_str("  }\n");
        }
    }
    out.push_str("}\n");
    add_elements(&mut out, table, rules.elements());
    out
}

/// The script that makes `edits` to the table holding `before`, or `None` when there is
/// nothing to write. Only the edited Services are looked at; chains they stop using are
/// emptied now and deleted by the next script (see [`Ruleset`]'s stale chains).
pub fn changes(table: &str, before: &Ruleset, edits: &Edits) -> Option<String> {
    let none = ServiceRules::default();
    let mut chains_gone = Vec::new();
    let mut rewritten = Vec::new();
    let mut chains_new = Vec::new();
    let mut sets_gone = Vec::new();
    let mut sets_new = Vec::new();
    for (service, rules) in edits {
        let old = before.services().get(service).unwrap_or(&none);
        let new = rules.as_ref().unwrap_or(&none);
        if old == new {
            continue;
        }
        // Affinity sets whose declaration changes are made anew, and so are the chains
        // that use them.
        let remade: Vec<&String> = changed_or_gone(&old.sets, &new.sets);
        let uses_remade = |rules: &Vec<String>| {
            remade
                .iter()
                .any(|set| rules.iter().any(|rule| rule.contains(&format!("@{set} "))))
        };
        for (name, rules) in &old.chains {
            match new.chains.get(name) {
                None => chains_gone.push(name),
                Some(now) if now != rules || uses_remade(rules) => rewritten.push((name, now)),
                Some(_) => {}
            }
        }
        for (name, rules) in &new.chains {
            if !old.chains.contains_key(name) {
                chains_new.push((name, rules));
            }
        }
        sets_new.extend(
            changed_or_new(&old.sets, &new.sets)
                .into_iter()
                .map(|name| (name, &new.sets[name])),
        );
        sets_gone.extend(remade);
    }
    // Chains emptied by the last script, unless wanted again now.
    let stale: Vec<&String> = before
        .stale_chains()
        .iter()
        .filter(|name| !chains_new.iter().any(|(new, _)| new == name))
        .collect();
    let elements = before.element_changes(edits);
    if elements.gone.is_empty()
        && elements.added.is_empty()
        && chains_gone.is_empty()
        && rewritten.is_empty()
        && chains_new.is_empty()
        && sets_gone.is_empty()
        && sets_new.is_empty()
        && stale.is_empty()
    {
        return None;
    }
    let mut out = String::new();
    delete_elements(&mut out, table, &elements.gone);
    for name in &stale {
        let _ = writeln!(out, "delete chain ip {table} {name}");
    }
    for name in chains_gone
        .iter()
        .copied()
        .chain(rewritten.iter().map(|(name, _)| *name))
    {
        let _ = writeln!(out, "flush chain ip {table} {name}");
    }
    for name in &sets_gone {
        let _ = writeln!(out, "delete set ip {table} {name}");
    }
    for (name, declaration) in &sets_new {
        let _ = writeln!(out, "add set ip {table} {name} {{ {declaration} }}");
    }
    // `add chain` also takes a stale chain back (it is there, empty).
    for (name, _) in &chains_new {
        let _ = writeln!(out, "add chain ip {table} {name}");
    }
    for (name, rules) in chains_new.iter().chain(&rewritten) {
        for rule in rules.iter() {
            let _ = writeln!(out, "add rule ip {table} {name} {rule}");
        }
    }
    add_elements(&mut out, table, elements.added.iter());
    Some(out)
}

/// The script that removes the table (a node reset, or the proxy stopping for good).
pub fn remove(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

/// `add element` commands, one per set, for `elements` (in set order, as a ruleset
/// keeps them).
fn add_elements<'a>(out: &mut String, table: &str, elements: impl Iterator<Item = &'a Element>) {
    for (set, items) in by_set(elements, element) {
        let _ = writeln!(
            out,
            "add element ip {table} {set} {{ {} }}",
            items.join(", ")
        );
    }
}

/// `delete element` commands, one per set; a map's elements are named by their keys.
fn delete_elements(out: &mut String, table: &str, elements: &[Element]) {
    for (set, keys) in by_set(elements.iter(), key) {
        let _ = writeln!(
            out,
            "delete element ip {table} {set} {{ {} }}",
            keys.join(", ")
        );
    }
}

fn by_set<'a>(
    elements: impl Iterator<Item = &'a Element>,
    text: fn(&str) -> &str,
) -> BTreeMap<&'static str, Vec<&'a str>> {
    let mut sets: BTreeMap<&'static str, Vec<&'a str>> = BTreeMap::new();
    for (set, element) in elements {
        sets.entry(*set).or_default().push(text(element));
    }
    sets
}

fn element(text: &str) -> &str {
    text
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
