//! The library's top-level modules keep the layers `lib.rs` declares (each uses only modules of
//! earlier layers), and the sibling modules inside each folder form a graph with no cycle. Read
//! from the sources: every `crate::x` and `super::x` path outside comments is an edge.

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

/// The layers `lib.rs` declares, lowest first: its numbered `//! N. `a`, `b`` lines.
fn declared_layers(lib: &str) -> Vec<Vec<String>> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter_map(|l| {
            let (number, rest) = l.split_once(". ")?;
            number.parse::<usize>().ok()?;
            Some(
                rest.split(',')
                    .map(|m| m.trim().trim_matches('`').to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The edges of `graph` that do not go to an earlier layer.
fn against_layers(
    graph: &BTreeMap<String, BTreeSet<String>>,
    layers: &[Vec<String>],
) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|l| l.iter().any(|x| x == m));
    let mut bad = Vec::new();
    for (from, tos) in graph {
        for to in tos {
            match (layer_of(from), layer_of(to)) {
                (Some(a), Some(b)) if b < a => {}
                (a, b) => bad.push(format!("{from} (layer {a:?}) uses {to} (layer {b:?})")),
            }
        }
    }
    bad
}

#[test]
fn modules_keep_their_declared_layers_and_siblings_have_no_cycle() {
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
        top["bundle"].contains("train") && top["retrainer"].contains("stream"),
        "the scan sees edges: {top:?}"
    );
    if let Some(c) = cycle(&top) {
        panic!("top-level modules import each other: {}", c.join(" -> "));
    }
    let layers = declared_layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let declared: BTreeSet<&String> = layers.iter().flatten().collect();
    let top_level: BTreeSet<&String> = mods
        .iter()
        .filter(|(m, _)| m.len() == 1)
        .map(|(m, _)| &m[0])
        .collect();
    assert_eq!(
        declared, top_level,
        "lib.rs's layer list names every top-level module, once"
    );
    assert_eq!(
        declared.len(),
        layers.iter().flatten().count(),
        "{layers:?}"
    );
    let bad = against_layers(&top, &layers);
    assert!(
        bad.is_empty(),
        "against lib.rs's layers:\n{}",
        bad.join("\n")
    );
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
    let layers = declared_layers("//! Layers:\n//!\n//! 1. `a`\n//! 2. `b`, `c`\n//! 3. `d`\n");
    assert_eq!(layers, [vec!["a"], vec!["b", "c"], vec!["d"]]);
    assert!(against_layers(&g(&[("d", "b"), ("c", "a")]), &layers).is_empty());
    assert_eq!(
        against_layers(&g(&[("b", "c"), ("a", "d"), ("e", "a")]), &layers),
        [
            "a (layer Some(0)) uses d (layer Some(2))",
            "b (layer Some(1)) uses c (layer Some(1))",
            "e (layer None) uses a (layer Some(0))"
        ]
    );
    assert_eq!(
        names_after(
            "use crate::{bundle::X, train};\nlet y = crate::kafka::f();",
            "crate::"
        ),
        ["bundle", "train", "kafka"]
    );
}
