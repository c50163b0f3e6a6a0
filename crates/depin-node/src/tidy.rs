//! Repository checks run as ordinary tests: house rules that no compiler checks.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The crate root of every crate under `crates/`: its lib.rs, or main.rs for a binary.
fn crate_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let crates = workspace_root().join("crates");
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let dir = entry.expect("crate dir").path();
        if !dir.join("Cargo.toml").exists() {
            continue;
        }
        let lib = dir.join("src/lib.rs");
        let main = dir.join("src/main.rs");
        roots.push(if lib.exists() { lib } else { main });
    }
    roots.sort();
    roots
}

#[test]
fn every_crate_root_opens_with_what_it_owns_and_must_not_do() {
    let roots = crate_roots();
    assert!(roots.len() >= 9, "found only {roots:?}");
    for root in roots {
        let text = std::fs::read_to_string(&root).expect("crate root");
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        let has = |label: &str| {
            header
                .iter()
                .any(|l| l.strip_prefix("//! ").is_some_and(|l| l.starts_with(label)))
        };
        assert!(
            has("Owns: ") && has("Must not: "),
            "{} must open with `//! Owns: …` and `//! Must not: …` lines",
            root.display()
        );
    }
}
