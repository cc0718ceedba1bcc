//! Models the app can run: the committed default (`models/default/`) or files the user
//! opens, checked exactly as the command line checks them (same readers, same errors).
//!
//! Two families: the reference TRM (`Trm`, one maze size: bigger mazes are solved in its
//! frame) and the size-general TRM (`LocalTrm`, `[arch] mixer = "local"`: a maze of any
//! size on its own grid, halting when its Q head says so).

use burn::prelude::Backend;
use trm_shared::maze::DEFAULT_SIZE;
use trm_shared::model::{AnyModel, Cpu, MazeSize, StateDict};

/// A model's family and architecture, every field resolved (shared with the command line).
pub use trm_shared::model::ModelConfig as Arch;

/// A model ready to be built on any backend: its architecture and its weights.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// Shown in the page: where the model came from.
    pub name: String,
    /// Family and architecture.
    pub arch: Arch,
    /// The weights, by the checkpoint's names.
    pub state: StateDict,
}

impl ModelSpec {
    /// One line for the page.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.name, self.arch.describe())
    }

    /// The maze side of a reference model (its frame); `None` for the size-general model.
    pub fn side(&self) -> Option<usize> {
        self.arch.side()
    }

    /// Whether this is the size-general model (any size, stops when it halts).
    pub fn is_local(&self) -> bool {
        matches!(self.arch, Arch::Local { .. })
    }

    /// The default number of ACT steps: exactly this many for the reference model, at most
    /// this many for the size-general one.
    pub fn halt_max_steps(&self) -> usize {
        self.arch.halt_max_steps()
    }

    /// Builds the network on `device`.
    pub fn build<B: Backend>(&self, device: &B::Device) -> Result<AnyModel<B>, String> {
        AnyModel::build(&self.arch, &self.state, device).map_err(|e| format!("{}: {e}", self.name))
    }
}

/// Whether a file name is a config (ours is TOML, the reference's `all_config.yaml`).
pub fn is_config_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".toml", ".yaml", ".yml"].iter().any(|ext| lower.ends_with(ext))
}

/// The maze side a training config was made for (`[data] size` in our TOML), if it says.
pub fn data_size(config_name: &str, text: &str) -> Option<usize> {
    if !config_name.to_ascii_lowercase().ends_with(".toml") {
        return None;
    }
    let doc: toml::Table = toml::from_str(text).ok()?;
    let size = doc.get("data")?.get("size")?.as_integer()?;
    // A side whose square overflows is not a size (the config check then bounds the rest).
    usize::try_from(size).ok().filter(|&s| s > 0 && s.checked_mul(s).is_some())
}

/// Reads checkpoint bytes of either format, with the command line's reader.
pub fn read_checkpoint(name: &str, bytes: &[u8]) -> Result<StateDict, String> {
    StateDict::from_bytes(bytes, name).map_err(|e| e.to_string())
}

/// Builds a model spec from a config file and a checkpoint file (name and contents each),
/// resolved as the command line resolves it (a reference model whose config and weights do
/// not give its size takes 30x30 mazes), checking that the weights fit the config by
/// building the network once on the CPU.
pub fn load(config: (&str, &str), checkpoint: (&str, &[u8]), name: &str) -> Result<ModelSpec, String> {
    let (config_name, config_text) = config;
    let unresolved = Arch::parse(config_name, config_text).map_err(|e| match e {
        // Already named after the file.
        trm_shared::model::ModelError::Config(message) => message,
        other => other.to_string(),
    })?;
    let state = read_checkpoint(checkpoint.0, checkpoint.1)?;
    let arch = unresolved.resolve(&state, MazeSize::Default(DEFAULT_SIZE)).map_err(|e| format!("{}: {e}", checkpoint.0))?;
    let spec = ModelSpec { name: name.to_string(), arch, state };
    let model = AnyModel::<Cpu>::build(&spec.arch, &spec.state, &Default::default()).map_err(|e| format!("{}: {e}", checkpoint.0))?;
    Ok(ModelSpec { arch: model.config(), ..spec })
}

/// Sorts the files a user opened into (config, checkpoint), or says what is missing.
pub fn pick_files<'a, T>(files: &'a [(String, T)]) -> Result<(&'a (String, T), &'a (String, T)), String> {
    let configs: Vec<_> = files.iter().filter(|(n, _)| is_config_name(n)).collect();
    let checkpoints: Vec<_> = files.iter().filter(|(n, _)| !is_config_name(n)).collect();
    match (configs.as_slice(), checkpoints.as_slice()) {
        ([config], [checkpoint]) => Ok((config, checkpoint)),
        _ => Err(format!(
            "open two files together: one checkpoint (model.safetensors or a reference step_N) and its config \
             (config.toml or all_config.yaml); got {} config file(s) and {} other file(s)",
            configs.len(),
            checkpoints.len()
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use trm_shared::model::{LocalConfig, LocalTrm, RandomInit, Trm, TrmConfig};

    /// A tiny 5x5 model's config, and below its random weights (also used by the worker's tests).
    pub(crate) const CONFIG: &str = "[arch]\nhidden_size = 16\nnum_heads = 2\nexpansion = 2\nL_layers = 1\nH_cycles = 1\n\
        L_cycles = 1\nhalt_max_steps = 2\npos_encodings = \"rope\"\npuzzle_emb_ndim = 16\npuzzle_emb_len = 1\n\
        forward_dtype = \"float32\"\n\n[data]\nsize = 5\n";

    pub(crate) fn weights() -> Vec<u8> {
        let mut cfg = TrmConfig::from_toml_str(CONFIG).unwrap();
        cfg.seq_len = Some(25);
        cfg.vocab_size = Some(6);
        cfg.num_puzzle_identifiers = Some(1);
        let model = Trm::<Cpu>::build(&cfg, &mut RandomInit::new(1), &Default::default()).unwrap();
        model.to_safetensors_bytes().unwrap()
    }

    /// A tiny size-general model's config, and below its random weights.
    pub(crate) const LOCAL_CONFIG: &str = "[arch]\nmixer = \"local\"\nhidden_size = 8\nexpansion = 2.0\nL_layers = 1\n\
        H_cycles = 2\nL_cycles = 1\nhalt_max_steps = 12\n\n[data]\nmin_side = 5\n";

    pub(crate) fn local_weights() -> Vec<u8> {
        let cfg = LocalConfig::from_toml_str(LOCAL_CONFIG).unwrap();
        let model = LocalTrm::<Cpu>::build(&cfg, &mut RandomInit::new(2), &Default::default()).unwrap();
        model.to_safetensors_bytes().unwrap()
    }

    #[test]
    fn a_local_mixer_config_loads_the_size_general_model() {
        let spec = load(("config.toml", LOCAL_CONFIG), ("model.safetensors", &local_weights()), "default").unwrap();
        assert!(spec.is_local());
        assert_eq!((spec.side(), spec.halt_max_steps()), (None, 12));
        match &spec.arch {
            Arch::Local { config } => assert_eq!((config.hidden_size, config.ticks_per_step()), (8, 4)),
            other => panic!("{other:?}"),
        }
        assert!(spec.describe().starts_with("default: any maze size"), "{}", spec.describe());
        assert!(spec.describe().contains("within 12 ACT steps"), "{}", spec.describe());
        // A reference checkpoint under a local config, and a bad local config, say what is wrong.
        let e = load(("config.toml", LOCAL_CONFIG), ("model.safetensors", &weights()), "t").unwrap_err();
        assert!(e.starts_with("model.safetensors: ") && e.contains("embed_tokens"), "{e}");
        let e = load(("config.toml", "[arch]\nmixer = \"local\"\nnum_heads = 2\n"), ("m.safetensors", &local_weights()), "t")
            .unwrap_err();
        assert!(e.starts_with("config.toml: ") && e.contains("num_heads"), "{e}");
        // `mixer = "local"` only counts in our TOML.
    }

    #[test]
    fn the_committed_default_is_the_size_general_model() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/models/default");
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let spec = load(("config.toml", &config), ("model.safetensors", &bytes), "default").unwrap();
        assert!(spec.is_local(), "{}", spec.describe());
        assert!(spec.halt_max_steps() >= 1);
    }

    #[test]
    fn loads_our_safetensors_at_the_configs_data_size() {
        let bytes = weights();
        let spec = load(("config.toml", CONFIG), ("model.safetensors", &bytes), "test").unwrap();
        assert_eq!(spec.side(), Some(5));
        assert!(!spec.is_local());
        match &spec.arch {
            Arch::Reference { config, .. } => assert_eq!(config.seq_len, Some(25)),
            other => panic!("{other:?}"),
        }
        assert!(spec.describe().starts_with("test: 5x5 mazes, attention, hidden 16"), "{}", spec.describe());
    }

    #[test]
    fn bad_files_give_the_command_lines_errors() {
        let bytes = weights();
        let e = load(("config.toml", "[arch]\nhidden_size = 'x'"), ("m.safetensors", &bytes), "t").unwrap_err();
        assert!(e.starts_with("config.toml: invalid arch config"), "{e}");
        let e = load(("config.toml", CONFIG), ("m.safetensors", b"garbage!garbage!"), "t").unwrap_err();
        assert!(e.contains("m.safetensors: not a readable checkpoint"), "{e}");
        let e = load(("config.toml", &CONFIG.replace("hidden_size = 16", "hidden_size = 32")), ("m.safetensors", &bytes), "t")
            .unwrap_err();
        assert!(e.contains("checkpoint does not fit the model") && e.contains("embed_tokens.embedding_weight"), "{e}");
        let e = load(("config.toml", CONFIG), ("m.safetensors", &bytes[..bytes.len() / 2]), "t").unwrap_err();
        assert!(e.contains("not a readable checkpoint"), "{e}");
        let e = load(("all_config.yaml", "arch:\n  hidden_size: 512\n"), ("step_5", b"PK\x03\x04rest"), "t").unwrap_err();
        assert!(e.starts_with("step_5: not a readable checkpoint: zip:"), "{e}");
    }

    #[test]
    fn picks_one_config_and_one_checkpoint() {
        let files = vec![("step_10".to_string(), 1), ("all_config.yaml".to_string(), 2)];
        let (c, k) = pick_files(&files).unwrap();
        assert_eq!((c.1, k.1), (2, 1));
        let e = pick_files(&files[..1]).unwrap_err();
        assert!(e.contains("got 0 config file(s) and 1 other file(s)"), "{e}");
        assert_eq!(data_size("config.toml", CONFIG), Some(5));
        assert_eq!(data_size("all_config.yaml", CONFIG), None);
    }
}
