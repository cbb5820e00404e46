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

/// The top-level modules of the crate that `text` names through `crate::` paths (in `use`
/// groups too), comments left out.
fn crate_refs(text: &str) -> std::collections::BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut refs = std::collections::BTreeSet::new();
    for piece in code.split("crate::").skip(1) {
        if let Some(group) = piece.strip_prefix('{') {
            // `crate::{a::b, c, d::{e, f}}`: the names at the group's own depth.
            let (mut depth, mut start) = (0, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        refs.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident(piece));
        }
    }
    refs
}

/// Dependencies point one way: no two top-level modules of the agent's crate name each other
/// (a test double's module aside).
#[test]
fn no_two_modules_import_each_other() {
    let mut edges = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for (file, text) in product_sources("netpath-user") {
        let rel = file.trim_start_matches("netpath-user/src/");
        if rel.ends_with("fake.rs") {
            continue;
        }
        let top = rel
            .split('/')
            .next()
            .unwrap_or(rel)
            .trim_end_matches(".rs")
            .to_string();
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        for r in crate_refs(text) {
            if r != top {
                edges.entry(top.clone()).or_default().insert(r);
            }
        }
    }
    let mut both = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                both.push(format!("{a} <-> {b}"));
            }
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
