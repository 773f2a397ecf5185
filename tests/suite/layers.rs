//! No module imports one that imports it back: the library's top-level modules form a layered
//! graph with no cycle, and so do the sibling modules inside each folder. Read from the sources:
//! every `crate::x` and `super::x` path outside comments is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file of the library (not the binaries) with its module path.
fn modules(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() != "bin" {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.push((parts, path));
        }
    }
    out
}

/// The names following `prefix` in `code`: `prefix name` and `prefix {a, b::c}` forms.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(inner.split(',').map(|n| first_ident(n.trim())));
        } else {
            out.push(first_ident(rest));
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

fn first_ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cycle in `graph`, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|(m, _)| m.clone()).collect();
    let is_module = |path: &[String]| known.contains(path);

    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Per folder: sibling module → siblings it uses.
    let mut siblings: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, path) in &mods {
        let Some(first) = module.first() else {
            continue; // lib.rs
        };
        let code = without_comments(&std::fs::read_to_string(path).unwrap());
        for name in names_after(&code, "crate::") {
            if &name != first && is_module(std::slice::from_ref(&name)) {
                top.entry(first.clone()).or_default().insert(name);
            }
        }
        if module.len() >= 2 {
            let parent = module[..module.len() - 1].to_vec();
            let me = module.last().unwrap().clone();
            let via_crate = format!("crate::{}::", parent.join("::"));
            for name in names_after(&code, "super::")
                .into_iter()
                .chain(names_after(&code, &via_crate))
            {
                let mut sibling = parent.clone();
                sibling.push(name.clone());
                if name != me && is_module(&sibling) {
                    siblings
                        .entry(parent.clone())
                        .or_default()
                        .entry(me.clone())
                        .or_default()
                        .insert(name);
                }
            }
        }
    }
    assert!(top.len() > 10, "the scan found the modules: {top:?}");
    assert!(
        top["bundle"].contains("hyper") && top["retrainer"].contains("stream"),
        "the scan sees edges: {top:?}"
    );
    if let Some(c) = cycle(&top) {
        panic!("top-level modules import each other: {}", c.join(" -> "));
    }
    for (parent, graph) in &siblings {
        if let Some(c) = cycle(graph) {
            panic!("in {}: {}", parent.join("::"), c.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        names_after(
            "use crate::{bundle::X, train};\nlet y = crate::kafka::f();",
            "crate::"
        ),
        ["bundle", "train", "kafka"]
    );
}
