//! The modules of `src/` form layers without import cycles: the crate's top-level modules,
//! the engine's files, and the files of each loss family (beside their `mod.rs`), checked
//! from the `crate::` and `super::` paths in the code (comments aside). No family refers to
//! another, and the engine to none. A cycle fails with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under src/, as (path relative to src/, code without comment lines).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let code: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, code));
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&src, &src, &mut out);
    out
}

/// The identifiers that follow `prefix` in `code` (`crate::engine` → "engine"), including
/// each of a group `prefix{a, b::c}`.
fn targets(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The first cycle of `graph`, as its path, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap();
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut state, &mut Vec::new()))
}

fn assert_acyclic(what: &str, graph: &BTreeMap<String, BTreeSet<String>>) {
    if let Some(c) = cycle(graph) {
        panic!("{what}: import cycle {}", c.join(" → "));
    }
}

#[test]
fn top_level_modules_form_layers() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let module = path
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" {
            continue; // the root re-exports everything
        }
        let deps = targets(&code, "crate::");
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != module && d != "wgpu"));
    }
    // Items re-exported at the root (`crate::Contrastive`) are used by the harness alone.
    for (m, deps) in &graph {
        for d in deps {
            assert!(
                m == "testing" || d.chars().next().unwrap().is_lowercase(),
                "{m} uses the root re-export crate::{d}; name its module"
            );
        }
    }
    let graph: BTreeMap<String, BTreeSet<String>> = graph
        .into_iter()
        .map(|(m, deps)| {
            let deps = deps
                .into_iter()
                .filter(|d| d.chars().next().unwrap().is_lowercase())
                .collect();
            (m, deps)
        })
        .collect();
    assert_acyclic("src/", &graph);
    for low in [
        "engine",
        "error",
        "input",
        "options",
        "limit",
        "reference",
        "tolerance",
    ] {
        let deps = &graph[low];
        for high in ["measure", "losses", "testing", "device"] {
            assert!(!deps.contains(high), "{low} uses {high}");
        }
    }
}

/// Files of `dir` (src/engine, src/losses/<family>) as nodes, `super::file` and
/// `crate::<dir>::file` as edges; `mod.rs` is the parent that declares them and is left out.
fn sibling_graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let crate_path = format!("crate::{}::", dir.replace('/', "::"));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let Some(file) = path.strip_prefix(&format!("{dir}/")) else {
            continue;
        };
        if file.contains('/') || file == "mod.rs" {
            continue;
        }
        let name = file.trim_end_matches(".rs").to_string();
        let mut deps = targets(&code, "super::");
        deps.extend(targets(&code, &crate_path));
        deps.retain(|d| *d != name && d.chars().next().unwrap().is_lowercase());
        graph.insert(name, deps);
    }
    let files: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| files.contains(d));
    }
    graph
}

#[test]
fn the_engines_files_form_layers() {
    let graph = sibling_graph("engine");
    assert!(graph.len() >= 8, "{graph:?}");
    assert_acyclic("src/engine", &graph);
}

#[test]
fn the_measurements_files_form_layers_and_know_no_loss() {
    let graph = sibling_graph("measure");
    assert!(graph.len() >= 5, "{graph:?}");
    assert_acyclic("src/measure", &graph);
    for (path, code) in sources() {
        if path.starts_with("measure/") {
            assert!(!code.contains("crate::losses"), "{path} uses a loss family");
        }
    }
}

#[test]
fn every_family_stands_alone_and_its_files_form_layers() {
    let families = [
        "contrastive",
        "triplet",
        "softmax",
        "sigmoid",
        "weighting",
        "proxy",
    ];
    for family in families {
        let graph = sibling_graph(&format!("losses/{family}"));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/losses")
            .join(family);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        // The same roles, in files of the same names, in every family (ARCHITECTURE.md).
        assert_eq!(
            files,
            [
                "kernels.rs",
                "limit.rs",
                "mod.rs",
                "reference.rs",
                "steps.rs",
                "tolerance.rs"
            ],
            "{family}"
        );
        assert_acyclic(family, &graph);
        for (path, code) in sources() {
            if !path.starts_with(&format!("losses/{family}/")) {
                continue;
            }
            for other in families.iter().filter(|o| **o != family) {
                for used in [format!("losses::{other}"), format!("super::super::{other}")] {
                    assert!(!code.contains(&used), "{path} uses {used}");
                }
            }
        }
    }
}
