//! Checks that keep ARCHITECTURE.md a true map of the house: every product source file is
//! named in the section of its crate. Run with the workspace's unit tests.
#![cfg(test)]

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The crates whose sources are the product (and the project's own tools), with the heading
/// of their ARCHITECTURE.md section.
const CRATES: &[(&str, &str)] = &[
    ("netpath-common", "### `netpath-common/`"),
    ("netpath-ebpf", "### `netpath-ebpf/`"),
    ("netpath-user", "### `netpath-user/`"),
    ("bench", "### `bench/` and `xtask/`"),
    ("xtask", "### `bench/` and `xtask/`"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, as paths relative to it with `/` separators.
fn sources(dir: &Path, under: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, under, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(under).expect("below its root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The text of the section that starts with `heading`, up to the next `### ` or `## `.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no section {heading}"));
    let body = &doc[start + heading.len()..];
    let end = ["\n### ", "\n## "]
        .iter()
        .filter_map(|h| body.find(h))
        .min()
        .unwrap_or(body.len());
    &body[..end]
}

/// What the section names in backquotes.
fn named(section: &str) -> Vec<&str> {
    section.split('`').skip(1).step_by(2).collect()
}

/// The product's source files of `krate` (below `src/`, tests and test support left out), with
/// their text.
fn product_sources(krate: &str) -> Vec<(String, String)> {
    let src = root().join(krate).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    files
        .into_iter()
        .filter(|f| {
            !f.starts_with("testing/") && !f.ends_with("tests.rs") && f != "dns/test_state.rs"
        })
        .map(|f| {
            let text = fs::read_to_string(src.join(&f)).expect("source file");
            (format!("{krate}/src/{f}"), text)
        })
        .collect()
}

/// One lock-poisoning policy: locks are parking_lot's, which do not poison. A std lock would
/// bring the question back (unwrap, into_inner, or reading as empty).
#[test]
fn every_lock_is_one_that_does_not_poison() {
    let mut std_locks = Vec::new();
    for krate in ["netpath-user"] {
        for (file, text) in product_sources(krate) {
            let uses_std_lock = text.split("use std::").skip(1).any(|u| {
                let stmt = &u[..u.find(';').unwrap_or(u.len())];
                stmt.contains("Mutex") || stmt.contains("RwLock")
            }) || text.contains("std::sync::Mutex")
                || text.contains("std::sync::RwLock");
            if uses_std_lock {
                std_locks.push(file);
            }
        }
    }
    assert!(
        std_locks.is_empty(),
        "std locks poison; use parking_lot's (ARCHITECTURE.md, Cross-cutting): {std_locks:?}"
    );
}

/// The paths a use tree or an expression path starting at `text` names, segment by segment
/// (`a::{b, c::{d}}` is `[a, b]` and `[a, c, d]`), as far as they are module-like names.
fn use_paths(text: &str) -> Vec<Vec<String>> {
    fn tree(text: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let text = text.trim_start();
        if let Some(group) = text.strip_prefix('{') {
            // The items of the group at its own depth, each a tree of its own.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        tree(&group[start..i], prefix, out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        tree(&group[start..i], prefix, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let ident: String = text
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            if !prefix.is_empty() {
                out.push(prefix.to_vec());
            }
            return;
        }
        let mut path = prefix.to_vec();
        path.push(ident.clone());
        match text[ident.len()..].strip_prefix("::") {
            Some(rest) => tree(rest, &path, out),
            None => out.push(path),
        }
    }
    let mut out = Vec::new();
    tree(text, &[], &mut out);
    out
}

/// The module path of a source file below `src/` (`agent/metrics/mod.rs` is
/// `[agent, metrics]`; `lib.rs` and `main.rs` are the crate root).
fn module_path(rel: &str) -> Vec<String> {
    let mut path: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(
        path.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        path.pop();
    }
    path
}

/// The modules a source file's code names through `crate::`, `super::` and `self::` paths (in
/// `use` groups too), as absolute paths; comments and the file's unit tests left out.
fn module_refs(rel: &str, text: &str) -> Vec<Vec<String>> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let me = module_path(rel);
    let mut refs = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", me[..me.len().saturating_sub(1)].to_vec()),
        ("self::", me.clone()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue; // `super::super::x`, or a longer name ending in the prefix
            }
            for path in use_paths(&code[at + prefix.len()..]) {
                let mut abs = base.clone();
                abs.extend(path);
                refs.push(abs);
            }
        }
    }
    refs
}

/// Dependencies point one way: no two sibling modules of the agent's crate name each other,
/// at any level (`cluster` and `api`; `agent::health` and `agent::transactions`); a module's
/// own children may name it (they are inside it) and the test doubles are left out.
#[test]
fn no_two_modules_import_each_other() {
    use std::collections::{BTreeMap, BTreeSet};
    // (parent, from, to): a module below `parent::from` names one below `parent::to`.
    let mut edges = BTreeSet::<(Vec<String>, String, String)>::new();
    for (file, text) in product_sources("netpath-user") {
        let rel = file.trim_start_matches("netpath-user/src/");
        if rel.ends_with("fake.rs") {
            continue;
        }
        let me = module_path(rel);
        for to in module_refs(rel, &text) {
            let common = me.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if let (Some(a), Some(b)) = (me.get(common), to.get(common)) {
                // Only modules count: a name with a capital is an item of the parent.
                if b.starts_with(|c: char| c.is_ascii_lowercase()) {
                    edges.insert((me[..common].to_vec(), a.clone(), b.clone()));
                }
            }
        }
    }
    let mut both = BTreeMap::<String, Vec<String>>::new();
    for (parent, a, b) in &edges {
        if a < b && edges.contains(&(parent.clone(), b.clone(), a.clone())) {
            let at = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            both.entry(at).or_default().push(format!("{a} <-> {b}"));
        }
    }
    assert!(both.is_empty(), "modules that import each other: {both:?}");
}

/// The longest a product file may grow: past it a file holds more than one concern.
const MAX_LINES: usize = 400;

/// Every product file one concern, at most [`MAX_LINES`] lines (tests, test support and the
/// benchmark may be longer).
#[test]
fn no_product_file_is_over_the_limit() {
    let mut long = Vec::new();
    for krate in ["netpath-common", "netpath-ebpf", "netpath-user", "xtask"] {
        for (file, text) in product_sources(krate) {
            let lines = text.lines().count();
            if lines > MAX_LINES {
                long.push(format!("{file}: {lines}"));
            }
        }
    }
    assert!(long.is_empty(), "split these by concern: {long:?}");
}

#[test]
fn architecture_names_every_product_file() {
    let root = root();
    let doc = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for (krate, heading) in CRATES {
        let names = named(section(&doc, heading));
        let dir = root.join(krate);
        let mut files = Vec::new();
        sources(&dir.join("src"), &dir.join("src"), &mut files);
        if dir.join("build.rs").exists() {
            files.push("build.rs".into());
        }
        for file in files {
            let full = format!("{krate}/src/{file}");
            if !names.iter().any(|n| *n == file || *n == full) {
                missing.push(full);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name these product files (one true line each, in their \
         crate's section): {missing:#?}"
    );
}
