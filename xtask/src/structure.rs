//! Checks of the code's shape that no compiler makes: no import circles between the top-level
//! modules of the agent and of xtask (a module may use its parent or children; two siblings, or
//! a chain of them, may not use each other in a circle); the fuzz workspace's lints are the root's.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Module → the sibling modules it names (`crate::x` for top-level ones; `super::x` inside a
    /// directory module), from the source files under `src`.
    fn module_graph(src: &Path, prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path.strip_prefix(src).unwrap().with_extension("").display().to_string();
                if name.ends_with("_tests") || name == "main" || name == "lib" {
                    continue;
                }
                let module = name.trim_end_matches("/mod").to_owned();
                let (parent, own) = match module.rsplit_once('/') {
                    Some((parent, own)) => (Some(parent.to_owned()), own.to_owned()),
                    None => (None, module.clone()),
                };
                let text = std::fs::read_to_string(&path).unwrap();
                // Test modules may reach anywhere.
                let text = text.split("#[cfg(test)]").next().unwrap();
                let top = module.split('/').next().unwrap().to_owned();
                for (needle, scope) in [(format!("{prefix}::"), None), ("super::".to_owned(), parent.clone())] {
                    for used in text.split(needle.as_str()).skip(1) {
                        let used: String =
                            used.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        let (from, to) = match &scope {
                            // super::x inside dir/own.rs: sibling x within dir.
                            Some(dir) => (format!("{dir}/{own}"), format!("{dir}/{used}")),
                            None => (top.clone(), used.clone()),
                        };
                        if used.is_empty() || from == to || to.starts_with(char::is_uppercase) {
                            continue;
                        }
                        graph.entry(from).or_default().insert(to);
                    }
                }
            }
        }
        graph
    }

    /// A circle in `graph`, if there is one.
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn walk(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| n == node) {
                let mut found = path[at..].to_vec();
                found.push(node.to_owned());
                return Some(found);
            }
            if !done.insert(node.to_owned()) {
                return None;
            }
            path.push(node.to_owned());
            for next in graph.get(node).into_iter().flatten() {
                if let Some(found) = walk(next, graph, path, done) {
                    return Some(found);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        graph.keys().find_map(|node| walk(node, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn the_agent_and_xtask_have_no_import_circles() {
        let root = crate::workspace::root();
        for src in ["netvsc-user/src", "xtask/src"] {
            let graph = module_graph(&root.join(src), "crate");
            assert!(graph.len() > 5, "{src}: too few modules found: {graph:?}");
            if let Some(found) = circle(&graph) {
                panic!("{src}: import circle {}", found.join(" -> "));
            }
        }
    }

    /// The `[workspace.lints.*]` tables of a manifest, as text.
    fn lints(manifest: &str) -> String {
        let text = std::fs::read_to_string(crate::workspace::root().join(manifest)).unwrap();
        let start = text.find("[workspace.lints.rust]").unwrap_or_else(|| panic!("{manifest}: no lints"));
        let rest = &text[start..];
        let end =
            rest.match_indices("\n[").map(|(at, _)| at).find(|at| !rest[at + 1..].starts_with("[workspace.lints"));
        rest[..end.unwrap_or(rest.len())].trim().to_owned()
    }

    /// The fuzz crate is a workspace of its own (cargo-fuzz builds it apart), so it repeats the
    /// root's lints rather than inheriting them: the two must not drift.
    #[test]
    fn the_fuzz_workspace_has_the_roots_lints() {
        assert_eq!(lints("fuzz/Cargo.toml"), lints("Cargo.toml"));
    }

    #[test]
    fn a_circle_is_found() {
        let mut graph = BTreeMap::new();
        graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
        graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
        graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
        assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
        graph.insert("c".to_owned(), BTreeSet::new());
        assert_eq!(circle(&graph), None);
    }
}
