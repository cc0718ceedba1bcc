//! Models the app can run: the committed default (`models/default/`) or files the user
//! opens, checked exactly as the command line checks them (same readers, same errors).
//!
//! Two families: the reference TRM ([`Trm`], one maze size: bigger mazes are solved in its
//! frame) and the size-general TRM ([`LocalTrm`], `[arch] mixer = "local"`: a maze of any
//! size on its own grid, halting when its Q head says so).

use serde::{Deserialize, Serialize};
use trm_shared::maze::DEFAULT_SIZE;
use trm_shared::model::checkpoint::{Format, sniff};
use trm_shared::model::{Cpu, LocalConfig, LocalTrm, StateDict, Trm, TrmConfig};

/// A model's family and architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arch {
    /// The reference TRM: `side` x `side` mazes, exactly `halt_max_steps` ACT steps by default.
    Reference {
        /// The config with every dataset field filled.
        config: TrmConfig,
        /// Maze side the model takes.
        side: usize,
    },
    /// The size-general TRM: any maze size, ACT steps until its Q head says halt.
    Local {
        /// The `[arch]` table.
        config: LocalConfig,
    },
}

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
        match &self.arch {
            Arch::Reference { config: c, side: s } => format!(
                "{}: {s}x{s} mazes, hidden {}, {} layers, H{}xL{}, {} ACT steps",
                self.name, c.hidden_size, c.l_layers, c.h_cycles, c.l_cycles, c.halt_max_steps
            ),
            Arch::Local { config: c } => format!(
                "{}: any maze size (size-general, local mixer), hidden {}, {} layers, H{}xL{} ({} ticks per ACT step), \
                 halts by itself within {} ACT steps",
                self.name,
                c.hidden_size,
                c.l_layers,
                c.h_cycles,
                c.l_cycles,
                c.ticks_per_step(),
                c.halt_max_steps
            ),
        }
    }

    /// The maze side of a reference model (its frame); `None` for the size-general model.
    pub fn side(&self) -> Option<usize> {
        match &self.arch {
            Arch::Reference { side, .. } => Some(*side),
            Arch::Local { .. } => None,
        }
    }

    /// Whether this is the size-general model (any size, stops when it halts).
    pub fn is_local(&self) -> bool {
        matches!(self.arch, Arch::Local { .. })
    }

    /// The default number of ACT steps: exactly this many for the reference model, at most
    /// this many for the size-general one.
    pub fn halt_max_steps(&self) -> usize {
        match &self.arch {
            Arch::Reference { config, .. } => config.halt_max_steps,
            Arch::Local { config } => config.halt_max_steps,
        }
    }
}

/// Whether a file name is a config (ours is TOML, the reference's `all_config.yaml`).
pub fn is_config_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".toml", ".yaml", ".yml"].iter().any(|ext| lower.ends_with(ext))
}

/// Whether a config is the size-general model's (`[arch] mixer = "local"` in TOML).
pub fn is_local_config(name: &str, text: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".toml") && LocalConfig::is_local_toml(text)
}

/// Parses a config by its extension, as `TrmConfig::from_file` does, naming the file in errors.
pub fn parse_config(name: &str, text: &str) -> Result<TrmConfig, String> {
    let lower = name.to_ascii_lowercase();
    let result = if lower.ends_with(".toml") {
        TrmConfig::from_toml_str(text)
    } else {
        TrmConfig::from_yaml_str(text)
    };
    result.map_err(|e| format!("{name}: {e}"))
}

/// The maze side a training config was made for (`[data] size` in our TOML), if it says.
pub fn data_size(config_name: &str, text: &str) -> Option<usize> {
    if !config_name.to_ascii_lowercase().ends_with(".toml") {
        return None;
    }
    let doc: toml::Table = toml::from_str(text).ok()?;
    let size = doc.get("data")?.get("size")?.as_integer()?;
    usize::try_from(size).ok().filter(|&s| s > 0)
}

/// Reads checkpoint bytes of either format, told apart as the command line tells them.
pub fn read_checkpoint(name: &str, bytes: &[u8]) -> Result<StateDict, String> {
    match sniff(bytes) {
        Format::PyTorch => crate::torch_file::read_state_dict(name, bytes).map_err(|e| e.to_string()),
        _ => StateDict::from_bytes(bytes, name).map_err(|e| e.to_string()),
    }
}

/// Builds a model spec from a config file and a checkpoint file (name and contents each),
/// checking that the weights fit the config by building the network once on the CPU.
pub fn load(config: (&str, &str), checkpoint: (&str, &[u8]), name: &str) -> Result<ModelSpec, String> {
    let (config_name, config_text) = config;
    if is_local_config(config_name, config_text) {
        let cfg = LocalConfig::from_toml_str(config_text).map_err(|e| format!("{config_name}: {e}"))?;
        let state = read_checkpoint(checkpoint.0, checkpoint.1)?;
        // Every missing, extra or misshaped tensor, by name, as `trm predict` says it.
        let model = LocalTrm::<Cpu>::from_state_dict(&cfg, &state, &Default::default())
            .map_err(|e| format!("{}: {e}", checkpoint.0))?;
        return Ok(ModelSpec { name: name.to_string(), arch: Arch::Local { config: model.config().clone() }, state });
    }
    let mut cfg = parse_config(config_name, config_text)?;
    let state = read_checkpoint(checkpoint.0, checkpoint.1)?;
    state.fill_config(&mut cfg).map_err(|e| e.to_string())?;
    if cfg.seq_len.is_none() {
        // RoPE models do not record their length: the training config's size, else the
        // benchmark's 30x30, as `trm serve` does.
        let side = data_size(config_name, config_text).unwrap_or(DEFAULT_SIZE);
        cfg.seq_len = Some(side * side);
    }
    let seq_len = cfg.require_seq_len().map_err(|e| e.to_string())?;
    let side = trm_shared::maze::square_side(seq_len)
        .map_err(|_| format!("seq_len {seq_len} is not a square maze; the app needs square mazes"))?;
    // The same check as the command line: every missing, extra or misshaped tensor, by name.
    let model = Trm::<Cpu>::from_state_dict(&cfg, &state, &Default::default()).map_err(|e| e.to_string())?;
    let config = model.config().clone();
    Ok(ModelSpec { name: name.to_string(), arch: Arch::Reference { config, side }, state })
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
    use trm_shared::model::RandomInit;

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
        assert!(!is_local_config("all_config.yaml", LOCAL_CONFIG));
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
        assert!(spec.describe().starts_with("test: 5x5 mazes, hidden 16"), "{}", spec.describe());
    }

    #[test]
    fn bad_files_give_the_command_lines_errors() {
        let bytes = weights();
        let e = load(("config.toml", "[arch]\nhidden_size = 'x'"), ("m.safetensors", &bytes), "t").unwrap_err();
        assert!(e.starts_with("config.toml: config: invalid arch config"), "{e}");
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
