//! The models a server runs: each a [`LoadedModel`] with its own model thread and batcher
//! queue, held in registration order (the first is the default) under a cap.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use trm_shared::wire::ModelInfo;

use super::batcher::BatcherHandle;
use super::model_thread::ModelSource;

/// A model being served.
pub struct LoadedModel {
    /// What it is.
    pub info: ModelInfo,
    /// Where it was loaded from (eval jobs read the same files).
    pub source: ModelSource,
    /// The queue to its worker thread.
    pub batcher: BatcherHandle,
}

/// Why the registry refused or found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No model of that name.
    #[error("no model {name:?}; there are: {served}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names served, or "none".
        served: String,
    },
    /// The name is served already.
    #[error("a model named {0:?} is already served")]
    Served(String),
    /// A model of that name is being loaded.
    #[error("a model named {0:?} is being loaded")]
    Loading(String),
    /// Every slot is taken.
    #[error("{MAX_MODELS} models are served or being loaded already, the most this server holds")]
    Full,
}

/// Most models served at once (each holds its weights and a worker thread).
pub const MAX_MODELS: usize = 8;

/// The models, in registration order; the first is the default.
#[derive(Default)]
pub struct ModelRegistry {
    models: RwLock<Vec<Arc<LoadedModel>>>,
    // Names of the models being loaded: they hold their names and count against the cap, so
    // that concurrent registrations cannot load more than MAX_MODELS models at once.
    loading: Mutex<Vec<String>>,
}

/// A slot held while a model loads ([`ModelRegistry::reserve`]); dropped, it frees the slot.
pub struct Reservation<'a> {
    registry: &'a ModelRegistry,
    name: String,
}

impl Reservation<'_> {
    /// Serves the loaded model in the reserved slot.
    pub fn insert(self, model: LoadedModel) {
        let mut models = self.registry.models.write().unwrap_or_else(PoisonError::into_inner);
        models.push(Arc::new(model));
        // The name moves from loading to served under the models lock (dropping `self`).
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.registry.loading_names().retain(|n| *n != self.name);
    }
}

impl ModelRegistry {
    /// The default model (the first), if any.
    pub fn default_model(&self) -> Option<Arc<LoadedModel>> {
        self.read().first().cloned()
    }

    /// Every model, the default first.
    pub fn all(&self) -> Vec<Arc<LoadedModel>> {
        self.read().clone()
    }

    /// The model named `name`, or an error naming those there are.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, RegistryError> {
        let models = self.read();
        models.iter().find(|m| m.info.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = models.iter().map(|m| m.info.name.as_str()).collect();
            RegistryError::NotFound { name: name.to_string(), served: if names.is_empty() { "none".into() } else { names.join(", ") } }
        })
    }

    /// Every model's info.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.read().iter().map(|m| m.info.clone()).collect()
    }

    /// Adds a model, unless its name is taken or the registry is full.
    pub fn insert(&self, model: LoadedModel) -> Result<(), RegistryError> {
        let mut models = self.models.write().unwrap_or_else(PoisonError::into_inner);
        check_free(&models, &self.loading_names(), &model.info.name)?;
        models.push(Arc::new(model));
        Ok(())
    }

    /// Holds a slot and the name `name` for a model about to be loaded, unless the name is
    /// taken or every slot is (served or loading): the cap is checked before any loading.
    pub fn reserve(&self, name: &str) -> Result<Reservation<'_>, RegistryError> {
        let models = self.read();
        let mut loading = self.loading_names();
        check_free(&models, &loading, name)?;
        loading.push(name.to_string());
        Ok(Reservation { registry: self, name: name.to_string() })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<LoadedModel>>> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn loading_names(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.loading.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn check_free(models: &[Arc<LoadedModel>], loading: &[String], name: &str) -> Result<(), RegistryError> {
    if models.iter().any(|m| m.info.name == name) {
        return Err(RegistryError::Served(name.to_string()));
    }
    if loading.iter().any(|n| n == name) {
        return Err(RegistryError::Loading(name.to_string()));
    }
    if models.len() + loading.len() >= MAX_MODELS {
        return Err(RegistryError::Full);
    }
    Ok(())
}

/// Each directory of `root` holding model.safetensors and config.toml, as a model named after
/// the directory: `default` first, then the others by name. No `root` means no models.
pub fn committed_models(root: &Path, default: &str) -> std::io::Result<Vec<ModelSource>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut models = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let dir = entry?.path();
        let (checkpoint, config) = (dir.join("model.safetensors"), dir.join("config.toml"));
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if checkpoint.is_file() && config.is_file() {
            models.push(ModelSource { name, checkpoint, config });
        }
    }
    models.sort_by_key(|m| (m.name != default, m.name.clone()));
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_models_are_the_complete_directories_default_first() {
        let dir = tempfile::tempdir().unwrap();
        for (name, complete) in [("b-model", true), ("default", true), ("a-model", true), ("half", false)] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.safetensors"), b"x").unwrap();
            if complete {
                std::fs::write(d.join("config.toml"), b"x").unwrap();
            }
        }
        let names: Vec<String> = committed_models(dir.path(), "default").unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["default", "a-model", "b-model"]);
        assert!(committed_models(&dir.path().join("none"), "default").unwrap().is_empty());
    }

    #[test]
    fn the_cap_counts_models_being_loaded() {
        let registry = ModelRegistry::default();
        let slots: Vec<_> = (0..MAX_MODELS).map(|i| registry.reserve(&format!("m{i}")).unwrap()).collect();
        let full = registry.reserve("one-more").err().expect("every slot is taken");
        assert_eq!(full, RegistryError::Full);
        assert!(full.to_string().contains("being loaded"), "{full}");
        drop(slots);
        let slot = registry.reserve("m0").unwrap();
        let taken = registry.reserve("m0").err().expect("the name is held while it loads");
        assert!(taken.to_string().contains("is being loaded"), "{taken}");
        drop(slot);
        assert!(registry.reserve("m0").is_ok());
    }
}
