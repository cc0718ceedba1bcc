//! Files a request may name: only those under the server's model roots (`--model-root`).

use std::path::{Path, PathBuf};

/// Why a named file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// The server has no model roots at all.
    #[error("this server has no model roots, so no files can be named (start it with --model-root DIR)")]
    NoRoots,
    /// Nothing of that name exists under any root.
    #[error("{what} {path:?} does not exist under the model roots")]
    Missing {
        /// What the file is for (`checkpoint`, `config`).
        what: String,
        /// The path as given.
        path: String,
    },
    /// The path leads out of every root (through `..` or a symbolic link, or absolute).
    #[error("{what} {path:?} is outside the model roots ({roots})")]
    Outside {
        /// What the file is for.
        what: String,
        /// The path as given.
        path: String,
        /// The roots, for the message.
        roots: String,
    },
    /// The path names a directory or another non-file.
    #[error("{what} {path:?} is not a file")]
    NotAFile {
        /// What the file is for.
        what: String,
        /// The path as given.
        path: String,
    },
}

/// The canonical form of `path` (relative paths are taken relative to each root in turn),
/// if it names an existing file under one of `roots` (canonical already). Symbolic links and
/// `..` are resolved before the check, so neither can leave the roots.
pub fn resolve_under_roots(path: &str, roots: &[PathBuf], what: &str) -> Result<PathBuf, RootError> {
    if roots.is_empty() {
        return Err(RootError::NoRoots);
    }
    // Resolved at each request: a root that did not exist when the server started (a fresh
    // runs/ directory) counts once it does.
    let roots: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let given = Path::new(path);
    let candidates: Vec<PathBuf> =
        if given.is_absolute() { vec![given.to_path_buf()] } else { roots.iter().map(|r| r.join(given)).collect() };
    let Some(canonical) = candidates.iter().find_map(|c| c.canonicalize().ok()) else {
        return Err(RootError::Missing { what: what.into(), path: path.into() });
    };
    if !roots.iter().any(|root| canonical.starts_with(root)) {
        let roots = roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(RootError::Outside { what: what.into(), path: path.into(), roots });
    }
    if !canonical.is_file() {
        return Err(RootError::NotAFile { what: what.into(), path: path.into() });
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_only_under_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("models");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/m.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        let roots = vec![root.canonicalize().unwrap()];
        let inside = resolve_under_roots("a/m.safetensors", &roots, "checkpoint").unwrap();
        assert_eq!(inside, roots[0].join("a/m.safetensors"));
        let absolute = root.join("a/m.safetensors").display().to_string();
        assert_eq!(resolve_under_roots(&absolute, &roots, "checkpoint").unwrap(), inside);
        assert!(matches!(resolve_under_roots("../secret", &roots, "checkpoint"), Err(RootError::Outside { .. })));
        assert!(matches!(resolve_under_roots("a/../../secret", &roots, "x"), Err(RootError::Outside { .. })));
        let outside = dir.path().join("secret").display().to_string();
        assert!(matches!(resolve_under_roots(&outside, &roots, "x"), Err(RootError::Outside { .. })));
        assert!(matches!(resolve_under_roots("a", &roots, "x"), Err(RootError::NotAFile { .. })));
        assert!(matches!(resolve_under_roots("nope", &roots, "x"), Err(RootError::Missing { .. })));
        assert!(matches!(resolve_under_roots("a/m.safetensors", &[], "x"), Err(RootError::NoRoots)));
        // A root made after the start (a fresh runs/ directory) counts once it exists.
        let later = dir.path().join("later");
        let roots = vec![root.canonicalize().unwrap(), later.clone()];
        assert!(matches!(resolve_under_roots("job-1/m.safetensors", &roots, "x"), Err(RootError::Missing { .. })));
        std::fs::create_dir_all(later.join("job-1")).unwrap();
        std::fs::write(later.join("job-1/m.safetensors"), b"x").unwrap();
        let found = resolve_under_roots("job-1/m.safetensors", &roots, "x").unwrap();
        assert_eq!(found, later.canonicalize().unwrap().join("job-1/m.safetensors"));
    }
}
