//! The crate's layers point one way: a top-level module imports only modules that `src/lib.rs`
//! lists before it (so no two import each other, directly or through others), and no two files
//! of one module import each other. Reads `src/` as text: every `crate::name`
//! in a file of module `m` is an edge `m -> name`, every `super::name` in a file of a module
//! folder an edge between sibling files. Test code (files named `tests.rs` or `*_tests.rs`, and
//! a file's trailing `#[cfg(test)] mod tests`) may reach anywhere and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::repo_root;

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The file's code without comments and without a trailing test module.
fn production_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `prefix` (`crate::` or `super::`) in `code`, including those
/// inside a brace group right after it (`crate::{alert, score::X}`).
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// A cycle in `graph`, as the nodes along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// Top-level module of a file under `src/`: `src/model/vae.rs` -> `model`, `src/stats.rs` ->
/// `stats`; `None` for `lib.rs` and `main.rs`.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules in the order `src/lib.rs` declares them.
fn declared_modules(src: &Path) -> Vec<String> {
    std::fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Which top-level module imports which (test code left out).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let Some(module) = top_module(src, file) else {
            continue;
        };
        let code = production_code(&std::fs::read_to_string(file).unwrap());
        let edges = graph.entry(module.clone()).or_default();
        for name in paths_after(&code, "crate::") {
            if name != module && modules.contains(&name) {
                edges.insert(name);
            }
        }
    }
    graph
}

#[test]
fn modules_import_only_modules_listed_before_them() {
    let src = repo_root().join("src");
    let order = declared_modules(&src);
    let graph = module_graph(&src);
    assert_eq!(
        order.iter().cloned().collect::<BTreeSet<_>>(),
        graph.keys().cloned().collect::<BTreeSet<_>>(),
        "src/lib.rs declares every module with code"
    );
    let position = |m: &str| order.iter().position(|o| o == m).unwrap();
    let mut wrong = Vec::new();
    for (module, imports) in &graph {
        for import in imports {
            if position(import) > position(module) {
                wrong.push(format!("{module} -> {import}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "these imports point down the list of src/lib.rs: {wrong:?}"
    );
}

#[test]
fn top_level_modules_import_each_other_one_way_only() {
    let graph = module_graph(&repo_root().join("src"));
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    assert!(graph["score"].contains("model"), "the reader finds imports");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("modules import each other: {}", cycle.join(" -> "));
    }
}

#[test]
fn files_of_one_module_import_each_other_one_way_only() {
    let src = repo_root().join("src");
    let mut by_folder: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let files = rust_files(&src);
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || name == "lib" || name == "main" {
            continue;
        }
        let folder = file.parent().unwrap().to_path_buf();
        let siblings: BTreeSet<String> = files
            .iter()
            .filter(|f| f.parent() == Some(folder.as_path()))
            .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|n| n != "mod")
            .collect();
        let code = production_code(&std::fs::read_to_string(file).unwrap());
        let edges: BTreeSet<String> = paths_after(&code, "super::")
            .into_iter()
            .filter(|n| *n != name && siblings.contains(n))
            .collect();
        by_folder.entry(folder).or_default().insert(name, edges);
    }
    for (folder, graph) in &by_folder {
        if let Some(cycle) = find_cycle(graph) {
            panic!(
                "files of {} import each other: {}",
                folder.display(),
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_reader_sees_grouped_imports_and_cycles() {
    let code = "use crate::{alert::X, score};\nlet y = crate::model::f();\nfoo::crate::no";
    let names: Vec<String> = paths_after(code, "crate::").into_iter().collect();
    assert_eq!(names, ["alert", "model", "score"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}
