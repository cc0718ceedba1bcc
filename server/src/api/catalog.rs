//! The datasets the server can show: dataset directories in the reference layout found under
//! the data roots (`--data`), with splits loaded on first use and kept in memory.
//!
//! Names from requests are only ever looked up among the directories found, never joined to
//! a path, so a request cannot reach files outside the roots.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use trm_shared::dataset::{SplitData, read_split};

use super::error::ApiError;

/// Splits larger than this (inputs file) are not loaded for browsing.
const MAX_SPLIT_BYTES: u64 = 256 << 20;
/// Splits kept in memory at once; beyond, the cache starts afresh.
const MAX_CACHED_SPLITS: usize = 16;

/// A dataset directory and its splits, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDataset {
    /// Directory name.
    pub name: String,
    /// `(split name, split directory)`, sorted by name.
    pub splits: Vec<(String, PathBuf)>,
}

/// Dataset discovery and the split cache.
pub struct Catalog {
    roots: Vec<PathBuf>,
    cache: Mutex<HashMap<PathBuf, Arc<SplitData>>>,
}

impl Catalog {
    /// A catalog over `roots`, searched in order (the first dataset of a name wins).
    pub fn new(roots: Vec<PathBuf>) -> Catalog {
        Catalog { roots, cache: Mutex::new(HashMap::new()) }
    }

    /// The data roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Every dataset under the roots: a directory with at least one split (a subdirectory
    /// holding `dataset.json`). Unreadable directories are skipped.
    pub fn discover(&self) -> Vec<FoundDataset> {
        let mut found: Vec<FoundDataset> = Vec::new();
        for root in &self.roots {
            for dir in sorted_subdirs(root) {
                let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
                if found.iter().any(|d| d.name == name) {
                    continue;
                }
                let splits: Vec<(String, PathBuf)> = sorted_subdirs(&dir)
                    .into_iter()
                    .filter(|s| s.join("dataset.json").is_file())
                    .filter_map(|s| Some((s.file_name()?.to_str()?.to_string(), s)))
                    .collect();
                if !splits.is_empty() {
                    found.push(FoundDataset { name, splits });
                }
            }
        }
        found
    }

    /// The directory of `split` of dataset `name`, or a 404 naming what exists.
    pub fn split_dir(&self, name: &str, split: &str) -> Result<PathBuf, ApiError> {
        let datasets = self.discover();
        let Some(dataset) = datasets.iter().find(|d| d.name == name) else {
            let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
            return Err(ApiError::not_found(format!("no dataset {name:?}; there are: {}", list_or_none(&names))));
        };
        match dataset.splits.iter().find(|(s, _)| s == split) {
            Some((_, dir)) => Ok(dir.clone()),
            None => {
                let names: Vec<&str> = dataset.splits.iter().map(|(s, _)| s.as_str()).collect();
                Err(ApiError::not_found(format!("dataset {name:?} has no split {split:?}; it has: {}", names.join(", "))))
            }
        }
    }

    /// The split in `dir`, read once and then served from memory. Blocking.
    pub fn load(&self, dir: &Path) -> Result<Arc<SplitData>, ApiError> {
        if let Some(split) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(dir) {
            return Ok(split.clone());
        }
        let inputs = dir.join("all__inputs.npy");
        let size = std::fs::metadata(&inputs)
            .map_err(|e| ApiError::internal(format!("{}: {e}", inputs.display())))?
            .len();
        if size > MAX_SPLIT_BYTES {
            return Err(ApiError::unprocessable(format!(
                "{} is {size} bytes, too large to browse here (at most {MAX_SPLIT_BYTES})",
                inputs.display()
            )));
        }
        let split = Arc::new(read_split(dir).map_err(|e| ApiError::internal(format!("reading {}: {e}", dir.display())))?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_SPLITS {
            cache.clear();
        }
        cache.insert(dir.to_path_buf(), split.clone());
        Ok(split)
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// Subdirectories of `dir`, sorted by name; none when `dir` cannot be read.
fn sorted_subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}
