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
