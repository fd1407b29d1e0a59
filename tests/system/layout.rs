//! The crates' modules import each other in one direction: no circle, in
//! any crate. (A circle is how a change in one module ripples through the
//! others, and how a crate comes to be read from the middle outwards.)
//! A module is a file of a crate's `src/`, or a directory with everything
//! under it; it uses another when its code (its tests aside) names
//! `crate::<other>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src` with its code, tests and comments left out.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn code(text: &str) -> String {
        // Tests sit at the end of a file, under one `#[cfg(test)]`.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
    }
    fn all_under(dir: &Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                all_under(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push_str(&code(&std::fs::read_to_string(&path).expect("read")));
                into.push('\n');
            }
        }
    }
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().expect("name").to_string_lossy().into_owned();
        if path.is_dir() {
            let mut text = String::new();
            all_under(&path, &mut text);
            modules.insert(name, text);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            // A directory's `mod.rs` sibling file, if any, is the same module.
            let text = code(&std::fs::read_to_string(&path).expect("read"));
            modules.entry(name).or_insert_with(String::new).push_str(&text);
        }
    }
    modules
}

/// Who uses whom.
fn uses(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let named = |text: &str, other: &str| {
        let needle = format!("crate::{other}");
        text.match_indices(&needle).any(|(at, _)| {
            let next = text[at + needle.len()..].chars().next();
            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    };
    modules
        .iter()
        .map(|(name, text)| {
            let used = modules.keys().filter(|other| *other != name && named(text, other)).cloned().collect();
            (name.clone(), used)
        })
        .collect()
}

/// A circle, if there is one, as the path that closes it.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| visit(start, edges, &mut done, &mut Vec::new()))
}

#[test]
fn no_crate_imports_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in ["engine/src", "api/src", "worker/src", "src"] {
        let modules = modules(&root.join(src));
        assert!(modules.len() >= 5, "{src}: {:?}", modules.keys());
        let edges = uses(&modules);
        assert!(edges.values().any(|used| !used.is_empty()), "{src}: no use seen at all");
        if let Some(found) = circle(&edges) {
            panic!("{src}: the modules import each other in a circle: {}", found.join(" -> "));
        }
    }
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::new()),
    ]
    .into();
    assert_eq!(circle(&edges), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let modules: BTreeMap<String, String> =
        [("x".to_owned(), "use crate::yz;".to_owned()), ("y".to_owned(), String::new())].into();
    assert!(uses(&modules)["x"].is_empty(), "crate::yz is not crate::y");
}
