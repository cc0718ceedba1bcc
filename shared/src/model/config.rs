//! The model's configuration, with the reference's field names (`TinyRecursiveReasoningModel_ACTV1Config`).
//!
//! It reads the `arch:` section of the `all_config.yaml` that the reference's `pretrain.py`
//! writes next to every checkpoint, a bare arch mapping (such as `config/arch/trm.yaml`), and
//! our own TOML (an `[arch]` table or top-level keys). The three fields the reference takes
//! from the dataset (`seq_len`, `vocab_size`, `num_puzzle_identifiers`) may be absent: they are
//! then filled from the inputs and from the checkpoint's tensor shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::ModelError;

/// How positions are encoded (`pos_encodings` in the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosEncoding {
    /// Rotary embeddings (half-split layout) on q and k, over prefix and maze positions.
    Rope,
    /// A learned `[puzzle_emb_len + seq_len, hidden]` table added to the embeddings.
    Learned,
    /// No position information (the MLP-t variant mixes positions itself).
    None,
}

/// The three config fields the reference takes from the dataset, once known: what a built
/// [`super::Trm`] holds ([`TrmConfig::data_sizes`]), so that model code never meets an unknown one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSizes {
    /// Maze cells per example.
    pub seq_len: usize,
    /// Token ids.
    pub vocab_size: usize,
    /// Rows of the puzzle embedding (1 without one).
    pub num_puzzle_identifiers: usize,
}

/// The TRM architecture. Field names are the reference's, so that its YAML reads unchanged.
///
/// Defaults are those of the reference's `config/arch/trm.yaml` (note: `L_cycles` 6 there,
/// while the published maze checkpoints were trained with 4; their `all_config.yaml` says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrmConfig {
    /// Width of every hidden state (`D`).
    pub hidden_size: usize,
    /// Attention heads; `head_dim = hidden_size / num_heads`.
    pub num_heads: usize,
    /// SwiGLU expansion; the inner size is `ceil_256(round(expansion * d * 2 / 3))`.
    pub expansion: f64,
    /// Blocks in the single reasoning network `L_level`.
    #[serde(rename = "L_layers")]
    pub l_layers: usize,
    /// Ignored by TRM (kept so that reference configs round-trip).
    #[serde(rename = "H_layers", skip_serializing_if = "Option::is_none")]
    pub h_layers: Option<usize>,
    /// Outer recursions per ACT step (the last one is the one with gradient).
    #[serde(rename = "H_cycles")]
    pub h_cycles: usize,
    /// z_L updates per outer recursion.
    #[serde(rename = "L_cycles")]
    pub l_cycles: usize,
    /// ACT steps before a row is forced to halt; eval always runs exactly this many.
    pub halt_max_steps: usize,
    /// Training only: probability that a row gets a random minimum number of steps.
    pub halt_exploration_prob: f64,
    /// Position encoding.
    pub pos_encodings: PosEncoding,
    /// Replace attention by an MLP across the sequence axis.
    pub mlp_t: bool,
    /// Width of the learned per-puzzle embedding (0 = none).
    #[serde(deserialize_with = "de_puzzle_emb_ndim")]
    pub puzzle_emb_ndim: usize,
    /// Prefix slots; 0 means `ceil(puzzle_emb_ndim / hidden_size)`.
    pub puzzle_emb_len: usize,
    /// Epsilon of the weightless RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// The reference's compute dtype (`float32`, `bfloat16` or `float16`): activations and
    /// weight casts in the forward pass, with f32 master weights. A [`super::Trm`] computes in
    /// it once told to ([`super::Trm::with_compute_dtype`]; the server does so on CUDA), and
    /// `H_init`/`L_init` are saved in it, so that the reference loads our files as its own.
    pub forward_dtype: String,
    /// Halt on `q_halt > 0` alone (true) or on `q_halt > q_continue` with a Q target (false).
    #[serde(rename = "no_ACT_continue")]
    pub no_act_continue: bool,
    /// Maze cells per example (900 for 30x30). From the dataset when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// Token ids (6 for mazes). From the checkpoint when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Rows of the puzzle embedding. From the checkpoint when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_puzzle_identifiers: Option<usize>,
    /// Keys we do not use (`name`, `loss`, `batch_size`, ...), by name, as text; kept for
    /// messages and so that a config written back loses nothing that matters to us.
    #[serde(skip)]
    pub extra: BTreeMap<String, String>,
}

impl Default for TrmConfig {
    fn default() -> Self {
        TrmConfig {
            hidden_size: 512,
            num_heads: 8,
            expansion: 4.0,
            l_layers: 2,
            h_layers: None,
            h_cycles: 3,
            l_cycles: 6,
            halt_max_steps: 16,
            halt_exploration_prob: 0.1,
            pos_encodings: PosEncoding::Rope,
            mlp_t: false,
            puzzle_emb_ndim: 512,
            puzzle_emb_len: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            forward_dtype: "bfloat16".into(),
            no_act_continue: true,
            seq_len: None,
            vocab_size: None,
            num_puzzle_identifiers: None,
            extra: BTreeMap::new(),
        }
    }
}

/// Field names this struct reads; others go to `extra`.
const KNOWN_FIELDS: &[&str] = &[
    "hidden_size", "num_heads", "expansion", "L_layers", "H_layers", "H_cycles", "L_cycles", "halt_max_steps",
    "halt_exploration_prob", "pos_encodings", "mlp_t", "puzzle_emb_ndim", "puzzle_emb_len", "rms_norm_eps",
    "rope_theta", "forward_dtype", "no_ACT_continue", "seq_len", "vocab_size", "num_puzzle_identifiers",
];

/// `config/arch/trm.yaml` writes `puzzle_emb_ndim: ${.hidden_size}`, a Hydra interpolation
/// that `all_config.yaml` has resolved. Accept the raw form too; `usize::MAX` marks it until
/// [`TrmConfig::validate`] substitutes `hidden_size`.
fn de_puzzle_emb_ndim<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(usize),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(v) => Ok(v),
        Raw::Text(s) if s.trim() == "${.hidden_size}" => Ok(usize::MAX),
        Raw::Text(s) => Err(serde::de::Error::custom(format!(
            "puzzle_emb_ndim must be an integer or \"${{.hidden_size}}\", found {s:?}"
        ))),
    }
}

/// Largest `seq_len` accepted (the largest maze).
pub const MAX_SEQ_LEN: usize = crate::maze::MAX_CELLS;
/// Most weights a model may have (1 GiB of f32); the reference's maze model has 7M.
pub const MAX_PARAMETERS: u128 = 1 << 28;

/// Rounds `a` up to a multiple of `b`, as the reference's `_find_multiple`.
fn find_multiple(a: usize, b: usize) -> usize {
    a.div_ceil(b) * b
}

/// Inner width of the reference's SwiGLU for input width `d`.
pub fn swiglu_inner(d: usize, expansion: f64) -> usize {
    // Python's round() rounds half to even; the product is never exactly .5 for the sizes
    // in use, but follow it anyway.
    let x = expansion * d as f64 * 2.0 / 3.0;
    let r = x.round_ties_even() as usize;
    find_multiple(r, 256)
}

impl TrmConfig {
    /// Reads a config file: YAML (`.yaml`/`.yml`, the reference's) or TOML (`.toml`, ours).
    /// Other names are tried as YAML, then TOML.
    #[cfg(feature = "native")]
    pub fn from_file(path: &std::path::Path) -> Result<TrmConfig, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let result = match ext.as_str() {
            "toml" => TrmConfig::from_toml_str(&text),
            "yaml" | "yml" => TrmConfig::from_yaml_str(&text),
            _ => TrmConfig::from_yaml_str(&text).or_else(|_| TrmConfig::from_toml_str(&text)),
        };
        result.map_err(|e| match e {
            ModelError::Config(msg) => ModelError::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Parses YAML: a whole `all_config.yaml` (its `arch:` section is used) or a bare arch mapping.
    pub fn from_yaml_str(text: &str) -> Result<TrmConfig, ModelError> {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ModelError::Config(format!("invalid YAML: {e}")))?;
        let arch = match doc.get("arch") {
            Some(a) => a.clone(),
            None => doc,
        };
        let Some(map) = arch.as_mapping() else {
            return Err(ModelError::Config("the config is not a mapping of fields".into()));
        };
        // Re-serialise the section so that errors name the field (from_value drops paths).
        let text = serde_yaml_ng::to_string(&arch).map_err(|e| ModelError::Config(e.to_string()))?;
        let mut cfg: TrmConfig =
            serde_yaml_ng::from_str(&text).map_err(|e| ModelError::Config(format!("invalid arch config: {e}")))?;
        for (k, v) in map {
            if let Some(k) = k.as_str()
                && !KNOWN_FIELDS.contains(&k)
            {
                cfg.extra.insert(k.to_string(), serde_yaml_ng::to_string(v).unwrap_or_default().trim().to_string());
            }
        }
        cfg.validated()
    }

    /// Parses TOML: an `[arch]` table or the fields at top level.
    pub fn from_toml_str(text: &str) -> Result<TrmConfig, ModelError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| ModelError::Config(format!("invalid TOML: {e}")))?;
        let data_size = data_size(&doc)?;
        let arch = match doc.get("arch") {
            Some(toml::Value::Table(t)) => t.clone(),
            Some(_) => return Err(ModelError::Config("`arch` must be a table".into())),
            None => doc,
        };
        let text = toml::to_string(&arch).map_err(|e| ModelError::Config(e.to_string()))?;
        let mut cfg: TrmConfig =
            toml::from_str(&text).map_err(|e| ModelError::Config(format!("invalid arch config: {e}")))?;
        for (k, v) in &arch {
            if !KNOWN_FIELDS.contains(&k.as_str()) {
                cfg.extra.insert(k.clone(), v.to_string());
            }
        }
        // A training config (ours) names the maze side it was trained on in `[data] size`;
        // RoPE weights do not record it, so that is the model's sequence length.
        if cfg.seq_len.is_none()
            && let Some(size) = data_size
        {
            let cells = size.checked_mul(size).filter(|&c| c <= MAX_SEQ_LEN);
            cfg.seq_len = Some(cells.ok_or_else(|| ModelError::Config(format!("[data] size {size} is too large")))?);
        }
        cfg.validated()
    }

    /// Our TOML form of this config (an `[arch]` table).
    pub fn to_toml_string(&self) -> Result<String, ModelError> {
        let mut doc = toml::Table::new();
        let arch = toml::Value::try_from(self).map_err(|e| ModelError::Config(format!("cannot write TOML: {e}")))?;
        doc.insert("arch".into(), arch);
        toml::to_string(&doc).map_err(|e| ModelError::Config(format!("cannot write TOML: {e}")))
    }

    /// Resolves the `${.hidden_size}` placeholder, then checks the config for what the
    /// reference would crash on (or silently misbehave with).
    pub fn validated(mut self) -> Result<TrmConfig, ModelError> {
        if self.puzzle_emb_ndim == usize::MAX {
            self.puzzle_emb_ndim = self.hidden_size;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks the fields against each other and against sane maxima, so that a crafted file
    /// cannot ask for a huge model. Dataset fields may still be absent.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (name, v, max) in [
            ("hidden_size", Some(self.hidden_size), 4096),
            ("num_heads", Some(self.num_heads), 256),
            ("L_layers", Some(self.l_layers), 64),
            ("H_layers", self.h_layers, 64),
            ("H_cycles", Some(self.h_cycles), 64),
            ("L_cycles", Some(self.l_cycles), 64),
            ("halt_max_steps", Some(self.halt_max_steps), 1024),
            ("puzzle_emb_ndim", Some(self.puzzle_emb_ndim), 1 << 16),
            ("puzzle_emb_len", Some(self.puzzle_emb_len), 1024),
            ("seq_len", self.seq_len, MAX_SEQ_LEN),
            ("vocab_size", self.vocab_size, 1 << 16),
            ("num_puzzle_identifiers", self.num_puzzle_identifiers, 1 << 24),
        ] {
            if let Some(v) = v
                && v > max
            {
                return bad(format!("{name} must be at most {max}, found {v}"));
            }
        }
        if self.hidden_size == 0 || self.num_heads == 0 || self.hidden_size % self.num_heads != 0 {
            return bad(format!(
                "hidden_size {} must be a positive multiple of num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.mlp_t && self.pos_encodings == PosEncoding::Rope && (self.hidden_size / self.num_heads) % 2 != 0 {
            return bad(format!("RoPE needs an even head_dim, found {}", self.hidden_size / self.num_heads));
        }
        if !(self.expansion > 0.0 && self.expansion <= 16.0) {
            return bad(format!("expansion must be in (0, 16], found {}", self.expansion));
        }
        if self.l_layers == 0 || self.h_cycles == 0 || self.l_cycles == 0 {
            return bad(format!(
                "L_layers, H_cycles and L_cycles must be at least 1, found {}, {}, {}",
                self.l_layers, self.h_cycles, self.l_cycles
            ));
        }
        if self.halt_max_steps == 0 {
            return bad("halt_max_steps must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.halt_exploration_prob) {
            return bad(format!("halt_exploration_prob must be in [0, 1], found {}", self.halt_exploration_prob));
        }
        if !(self.rms_norm_eps >= 0.0 && self.rope_theta > 0.0) {
            return bad("rms_norm_eps must be >= 0 and rope_theta > 0".into());
        }
        // The reference applies puzzle_emb_len even without a puzzle embedding and then fails
        // on a shape mismatch (rope table or lm_head slice); say so up front.
        if self.puzzle_emb_ndim == 0 && self.puzzle_emb_len != 0 {
            return bad(format!(
                "puzzle_emb_ndim is 0 but puzzle_emb_len is {}: with no puzzle embedding the prefix must be empty (set puzzle_emb_len = 0)",
                self.puzzle_emb_len
            ));
        }
        if self.puzzle_emb_ndim > self.prefix_len() * self.hidden_size {
            return bad(format!(
                "puzzle_emb_ndim {} does not fit in puzzle_emb_len {} slots of hidden_size {}",
                self.puzzle_emb_ndim,
                self.prefix_len(),
                self.hidden_size
            ));
        }
        self.forward_float_dtype()?;
        for (name, v) in [
            ("seq_len", self.seq_len),
            ("vocab_size", self.vocab_size),
            ("num_puzzle_identifiers", self.num_puzzle_identifiers),
        ] {
            if v == Some(0) {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if let Some(n) = self.parameter_count()
            && n > MAX_PARAMETERS
        {
            return bad(format!(
                "the model would have {n} weights (hidden_size {}, L_layers {}, seq_len {:?}, vocab_size {:?}), over the limit of {MAX_PARAMETERS}",
                self.hidden_size, self.l_layers, self.seq_len, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Weights (and RoPE table entries) of the network, once `seq_len` and `vocab_size` are
    /// known; in u128, as it is computed before the fields' product is known to fit.
    fn parameter_count(&self) -> Option<u128> {
        if self.hidden_size == 0 || self.num_heads == 0 {
            return None;
        }
        let d = self.hidden_size as u128;
        let vocab = self.vocab_size? as u128;
        let total = self.prefix_len() as u128 + self.seq_len? as u128;
        let swiglu = |width: u128| 3 * swiglu_inner(width as usize, self.expansion) as u128 * width;
        let puzzle = if self.puzzle_emb_ndim > 0 {
            self.num_puzzle_identifiers.unwrap_or(1) as u128 * self.puzzle_emb_ndim as u128
        } else {
            0
        };
        let positions = match self.pos_encodings {
            PosEncoding::Learned => total * d,
            PosEncoding::Rope => 2 * total * self.head_dim() as u128,
            PosEncoding::None => 0,
        };
        let mixer = if self.mlp_t { swiglu(total) } else { 4 * d * d };
        let layer = mixer + swiglu(d);
        Some(2 * vocab * d + 2 * d + 2 + puzzle + positions + self.l_layers as u128 * layer + 2 * d)
    }

    /// `forward_dtype` as a burn dtype, or an error naming the accepted values.
    pub fn forward_float_dtype(&self) -> Result<burn::tensor::FloatDType, ModelError> {
        use burn::tensor::FloatDType;
        match self.forward_dtype.as_str() {
            "float32" => Ok(FloatDType::F32),
            "bfloat16" => Ok(FloatDType::BF16),
            "float16" => Ok(FloatDType::F16),
            other => Err(ModelError::Config(format!(
                "forward_dtype must be float32, bfloat16 or float16, found {other:?}"
            ))),
        }
    }

    /// Prefix slots in front of the maze tokens (the reference's effective `puzzle_emb_len`).
    pub fn prefix_len(&self) -> usize {
        if self.puzzle_emb_len == 0 { self.puzzle_emb_ndim.div_ceil(self.hidden_size) } else { self.puzzle_emb_len }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The dataset fields, all known: the one place where an unknown one is an error, said
    /// with where it should come from. `num_puzzle_identifiers` is 1 when there is no puzzle
    /// embedding to size.
    pub fn data_sizes(&self) -> Result<DataSizes, ModelError> {
        let unknown = |m: &str| ModelError::Config(m.into());
        Ok(DataSizes {
            seq_len: self.seq_len.ok_or_else(|| unknown("seq_len is unknown: give it in the config, or load inputs first"))?,
            vocab_size: self.vocab_size.ok_or_else(|| unknown("vocab_size is unknown: give it in the config or a checkpoint"))?,
            num_puzzle_identifiers: match (self.puzzle_emb_ndim, self.num_puzzle_identifiers) {
                (0, n) => n.unwrap_or(1),
                (_, n) => n.ok_or_else(|| unknown("num_puzzle_identifiers is unknown: give it in the config or a checkpoint"))?,
            },
        })
    }

    /// Sets a dataset-derived field, or checks it against the value already present.
    pub fn fill(field: &mut Option<usize>, name: &str, value: usize, source: &str) -> Result<(), ModelError> {
        match *field {
            None => {
                *field = Some(value);
                Ok(())
            }
            Some(v) if v == value => Ok(()),
            Some(v) => Err(ModelError::Config(format!("{name} is {v} in the config but {value} in {source}"))),
        }
    }

    /// The 7M maze model as the reference trains it (README command), for tests and `trm bench`.
    pub fn maze_7m() -> TrmConfig {
        TrmConfig {
            l_cycles: 4,
            seq_len: Some(900),
            vocab_size: Some(6),
            num_puzzle_identifiers: Some(1),
            ..TrmConfig::default()
        }
    }

    /// A tiny attention model over `seq_len` maze cells and `num_puzzle_identifiers` puzzles
    /// (hidden 16, 2 heads, one layer, H_cycles 2 × L_cycles 1, 2 ACT steps, one puzzle
    /// slot, f32), small enough for a test to run it in milliseconds.
    pub fn tiny(seq_len: usize, num_puzzle_identifiers: usize) -> TrmConfig {
        TrmConfig {
            hidden_size: 16,
            num_heads: 2,
            l_layers: 1,
            h_cycles: 2,
            l_cycles: 1,
            halt_max_steps: 2,
            puzzle_emb_ndim: 16,
            puzzle_emb_len: 1,
            forward_dtype: "float32".into(),
            seq_len: Some(seq_len),
            vocab_size: Some(6),
            num_puzzle_identifiers: Some(num_puzzle_identifiers),
            ..TrmConfig::default()
        }
    }
}

/// `[data] size` of a training config, if it has one.
fn data_size(doc: &toml::Table) -> Result<Option<usize>, ModelError> {
    match doc.get("data").and_then(|d| d.get("size")) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as usize)),
        Some(v) => Err(ModelError::Config(format!("[data] size must be a positive integer, found {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_training_config_gives_the_sequence_length_of_its_mazes() {
        let c = TrmConfig::from_toml_str("[arch]\nhidden_size = 64\nnum_heads = 2\n[data]\nsize = 7\n").unwrap();
        assert_eq!(c.seq_len, Some(49));
        let explicit = TrmConfig::from_toml_str("[arch]\nseq_len = 16\n[data]\nsize = 7\n").unwrap();
        assert_eq!(explicit.seq_len, Some(16));
        assert!(TrmConfig::from_toml_str("[arch]\n[data]\nsize = -3\n").unwrap_err().to_string().contains("[data] size"));
    }

    #[test]
    fn swiglu_inner_matches_reference_rounding() {
        assert_eq!(swiglu_inner(512, 4.0), 1536);
        // mlp_t on a 30x30 maze: L = 916 -> round(2442.67) = 2443 -> 2560.
        assert_eq!(swiglu_inner(916, 4.0), 2560);
        assert_eq!(swiglu_inner(32, 4.0), 256);
        assert_eq!(swiglu_inner(384, 4.0), 1024);
    }

    #[test]
    fn reads_all_config_arch_section() {
        let yaml = "arch:\n  H_cycles: 3\n  H_layers: 0\n  L_cycles: 4\n  L_layers: 2\n  expansion: 4\n  forward_dtype: bfloat16\n  halt_exploration_prob: 0.1\n  halt_max_steps: 16\n  hidden_size: 512\n  loss:\n    loss_type: stablemax_cross_entropy\n    name: losses@ACTLossHead\n  mlp_t: false\n  name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1\n  no_ACT_continue: true\n  num_heads: 8\n  pos_encodings: rope\n  puzzle_emb_len: 16\n  puzzle_emb_ndim: 512\nlr: 0.0001\n";
        let c = TrmConfig::from_yaml_str(yaml).unwrap();
        assert_eq!(c.l_cycles, 4);
        assert_eq!(c.h_cycles, 3);
        assert_eq!(c.pos_encodings, PosEncoding::Rope);
        assert_eq!(c.seq_len, None);
        assert!(c.extra.contains_key("loss"));
        assert_eq!(c.prefix_len(), 16);
    }

    #[test]
    fn reads_raw_trm_yaml_interpolation() {
        let c = TrmConfig::from_yaml_str("hidden_size: 256\nnum_heads: 4\npuzzle_emb_ndim: ${.hidden_size}\n").unwrap();
        assert_eq!(c.puzzle_emb_ndim, 256);
    }

    #[test]
    fn toml_round_trip() {
        let c = TrmConfig::maze_7m();
        let text = c.to_toml_string().unwrap();
        let back = TrmConfig::from_toml_str(&text).unwrap();
        assert_eq!(back, c);
        let top = TrmConfig::from_toml_str("hidden_size = 64\nnum_heads = 4\nmlp_t = true\npos_encodings = \"none\"\n").unwrap();
        assert!(top.mlp_t);
        assert_eq!(top.pos_encodings, PosEncoding::None);
    }

    #[test]
    fn rejects_bad_configs_with_reasons() {
        let err = TrmConfig::from_yaml_str("hidden_size: 100\nnum_heads: 8\n").unwrap_err().to_string();
        assert!(err.contains("multiple of num_heads"), "{err}");
        let err = TrmConfig::from_yaml_str("puzzle_emb_ndim: 0\n").unwrap_err().to_string();
        assert!(err.contains("puzzle_emb_len"), "{err}");
        let err = TrmConfig::from_yaml_str("pos_encodings: sinusoid\n").unwrap_err().to_string();
        assert!(err.contains("sinusoid"), "{err}");
        let err = TrmConfig::from_yaml_str("hidden_size: [1]\n").unwrap_err().to_string();
        assert!(err.contains("hidden_size"), "{err}");
        let err = TrmConfig::from_yaml_str("- a\n- b\n").unwrap_err().to_string();
        assert!(err.contains("mapping"), "{err}");
        let err = TrmConfig::from_toml_str("hidden_size = \n").unwrap_err().to_string();
        assert!(err.contains("TOML"), "{err}");
    }

    #[test]
    fn fill_checks_agreement() {
        let mut f = None;
        TrmConfig::fill(&mut f, "seq_len", 900, "inputs").unwrap();
        TrmConfig::fill(&mut f, "seq_len", 900, "inputs").unwrap();
        let e = TrmConfig::fill(&mut f, "seq_len", 36, "inputs").unwrap_err().to_string();
        assert!(e.contains("900") && e.contains("36"), "{e}");
    }
}
