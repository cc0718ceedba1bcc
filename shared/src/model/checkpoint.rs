//! Checkpoints in and out, with the reference's tensor names and shapes.
//!
//! Reads the reference's `step_N` files (`torch.save(model.state_dict())`, a zip of pickled
//! metadata and raw storages) with our own reader ([`super::torch`]), which interprets only
//! the pickle opcodes for tensors, never runs code from the file and checks every declared
//! size against the bytes present. Reads and writes safetensors.
//! Keys may carry `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes; `model.inner.`
//! (ACTLossHead → ACT wrapper → inner model) is the reference's own path to the network.
//! bf16/f16/f64 and integer tensors are converted to f32.

use std::collections::{BTreeMap, BTreeSet};

use burn::prelude::*;

use super::ModelError;
use super::config::{PosEncoding, TrmConfig};
use super::trm::Trm;
use super::weights::{Init, NamedParams, WeightSource};

/// One tensor held on the host in f32, with the dtype it was stored in.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
    /// The dtype in the file (`F32`, `BF16`, ...), for messages.
    pub stored_dtype: String,
}

/// A state dict by canonical name (the reference's names without `model.inner.` and wrappers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    /// Tensors by canonical name, e.g. `L_level.layers.0.mlp.down_proj.weight`.
    pub tensors: BTreeMap<String, HostTensor>,
}

/// One way a checkpoint fails to fit the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorProblem {
    /// The model needs this tensor; the file lacks it.
    Missing { name: String, expected: Vec<usize> },
    /// The file has a tensor the model does not use.
    Unexpected { name: String, found: Vec<usize> },
    /// Present with the wrong shape.
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
}

impl std::fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorProblem::Missing { name, expected } => {
                write!(f, "missing tensor {name}: expected shape {expected:?}")
            }
            TensorProblem::Unexpected { name, found } => {
                write!(f, "unexpected tensor {name} of shape {found:?} (not part of this model)")
            }
            TensorProblem::Shape { name, expected, found } => {
                write!(f, "tensor {name}: expected shape {expected:?}, found {found:?}")
            }
        }
    }
}

/// The prefix the reference's training script gives every key (ACTLossHead → ACT → inner).
pub const REFERENCE_PREFIX: &str = "model.inner.";

/// Strips `_orig_mod.`, `module.` (any order, any count), then `model.` and `inner.`.
pub fn canonical_name(raw: &str) -> &str {
    let mut name = raw;
    loop {
        if let Some(rest) = name.strip_prefix("_orig_mod.") {
            name = rest;
        } else if let Some(rest) = name.strip_prefix("module.") {
            name = rest;
        } else {
            break;
        }
    }
    let name = name.strip_prefix("model.").unwrap_or(name);
    name.strip_prefix("inner.").unwrap_or(name)
}

/// Most axes a checkpoint tensor may have (the model's have at most 2).
const MAX_RANK: usize = 8;

/// Elements of a tensor of `shape`, or an error when the shape has too many axes or its
/// element count overflows.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize, String> {
    if shape.len() > MAX_RANK {
        return Err(format!("a tensor of {} axes (at most {MAX_RANK})", shape.len()));
    }
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| format!("shape {shape:?} is too large to address"))
}

/// The element types checkpoints store, by their safetensors names: width in bytes and a
/// little-endian decoder to f32.
pub(crate) fn element_type(dtype: &str) -> Option<(usize, fn(&[u8]) -> f32)> {
    Some(match dtype {
        "F32" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "BF16" => (2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        "F16" => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        "F64" => (8, |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        "I64" => (8, |b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        "I32" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "U8" => (1, |b| b[0] as f32),
        _ => return None,
    })
}

impl StateDict {
    /// Adds a tensor under its canonical name; two raw keys with the same canonical name
    /// (say `model.inner.x` and `_orig_mod.model.inner.x`) are ambiguous.
    pub fn insert(&mut self, raw_name: &str, tensor: HostTensor) -> Result<(), ModelError> {
        let name = canonical_name(raw_name).to_string();
        if self.tensors.insert(name.clone(), tensor).is_some() {
            return Err(ModelError::Format {
                source_name: raw_name.to_string(),
                message: format!("two tensors map to the same name {name}"),
            });
        }
        Ok(())
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Reads safetensors bytes (F32/BF16/F16/F64 and integer tensors, converted to f32).
    pub fn from_safetensors_bytes(bytes: &[u8], source_name: &str) -> Result<StateDict, ModelError> {
        use safetensors::SafeTensors;
        let format_err = |message: String| ModelError::Format { source_name: source_name.to_string(), message };
        let st = SafeTensors::deserialize(bytes).map_err(|e| format_err(format!("invalid safetensors: {e}")))?;
        let mut sd = StateDict::default();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let stored_dtype = format!("{:?}", view.dtype());
            let (width, decode) =
                element_type(&stored_dtype).ok_or_else(|| ModelError::Dtype { name: name.clone(), dtype: stored_dtype.clone() })?;
            // safetensors checks offsets against shapes; check anyway before decoding.
            let n = element_count(&shape).map_err(|m| format_err(format!("tensor {name}: {m}")))?;
            if n.checked_mul(width) != Some(raw.len()) {
                return Err(format_err(format!("tensor {name}: {} bytes for shape {shape:?} of {stored_dtype}", raw.len())));
            }
            let values = raw.chunks_exact(width).map(decode).collect();
            sd.insert(&name, HostTensor { shape, values, stored_dtype })?;
        }
        Ok(sd)
    }

    /// Reads a checkpoint file of either format, told apart by its first bytes.
    #[cfg(feature = "native")]
    pub fn read(path: &std::path::Path) -> Result<StateDict, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })?;
        StateDict::from_bytes(&bytes, &path.display().to_string())
    }

    /// Reads checkpoint bytes of either format, told apart by their first bytes.
    pub fn from_bytes(bytes: &[u8], source_name: &str) -> Result<StateDict, ModelError> {
        let format_err = |message: &str| ModelError::Format { source_name: source_name.to_string(), message: message.into() };
        match sniff(bytes) {
            Format::Safetensors => StateDict::from_safetensors_bytes(bytes, source_name),
            Format::PyTorch => super::torch::read_state_dict(source_name, bytes),
            Format::Unknown => Err(format_err("neither a PyTorch (zip/pickle) nor a safetensors file")),
        }
    }

    /// Serialises as safetensors. Keys get `prefix` (use [`REFERENCE_PREFIX`] for files the
    /// reference loads; add `_orig_mod.` in front for its compiled models). Tensors named in
    /// `bf16` are stored as bf16, the rest as f32.
    pub fn to_safetensors_bytes(&self, prefix: &str, bf16: &[&str]) -> Result<Vec<u8>, ModelError> {
        use safetensors::{Dtype, tensor::TensorView};
        let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in &self.tensors {
            let (dtype, bytes) = if bf16.contains(&name.as_str()) {
                (Dtype::BF16, t.values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect())
            } else {
                (Dtype::F32, t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
            };
            buffers.push((format!("{prefix}{name}"), dtype, t.shape.clone(), bytes));
        }
        let mut views = Vec::new();
        for (name, dtype, shape, bytes) in &buffers {
            let view = TensorView::new(*dtype, shape.clone(), bytes)
                .map_err(|e| ModelError::Format { source_name: name.clone(), message: e.to_string() })?;
            views.push((name.clone(), view));
        }
        safetensors::serialize(views, None)
            .map_err(|e| ModelError::Format { source_name: "safetensors writer".into(), message: e.to_string() })
    }

    /// The shape of `name` if present, which must have `rank` axes (a 0-d tensor where a
    /// matrix belongs is an error, not an index out of bounds).
    fn shape_of_rank(&self, name: &str, rank: usize) -> Result<Option<&[usize]>, ModelError> {
        match self.shape(name) {
            Some(s) if s.len() != rank => {
                Err(ModelError::Config(format!("checkpoint tensor {name} must have {rank} axes, found shape {s:?}")))
            }
            other => Ok(other),
        }
    }

    /// Fills the dataset-derived config fields from tensor shapes, checking any already set,
    /// then the config's bounds (so that a crafted shape cannot ask for a huge model).
    pub fn fill_config(&self, config: &mut TrmConfig) -> Result<(), ModelError> {
        let prefix = config.prefix_len();
        if let Some(s) = self.shape_of_rank("embed_tokens.embedding_weight", 2)? {
            TrmConfig::fill(&mut config.vocab_size, "vocab_size", s[0], "checkpoint tensor embed_tokens.embedding_weight")?;
        }
        if config.puzzle_emb_ndim > 0
            && let Some(s) = self.shape_of_rank("puzzle_emb.weights", 2)?
        {
            TrmConfig::fill(
                &mut config.num_puzzle_identifiers,
                "num_puzzle_identifiers",
                s[0],
                "checkpoint tensor puzzle_emb.weights",
            )?;
        }
        // seq_len is in the shapes only when positions have their own weights.
        let total = if config.pos_encodings == PosEncoding::Learned {
            let name = "embed_pos.embedding_weight";
            self.shape_of_rank(name, 2)?.map(|s| (s[0], name))
        } else if config.mlp_t {
            let name = "L_level.layers.0.mlp_t.gate_up_proj.weight";
            self.shape_of_rank(name, 2)?.map(|s| (s[1], name))
        } else {
            None
        };
        if let Some((total, name)) = total
            && total > prefix
        {
            TrmConfig::fill(&mut config.seq_len, "seq_len", total - prefix, &format!("checkpoint tensor {name} (minus {prefix} prefix slots)"))?;
        }
        config.validate().map_err(|e| match e {
            ModelError::Config(m) => ModelError::Config(format!("{m} (with sizes from the checkpoint's tensors)")),
            other => other,
        })
    }
}

/// File formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save`: a zip (PyTorch ≥ 1.6) or a bare pickle (legacy).
    PyTorch,
    /// safetensors: an 8-byte little-endian header length, then a JSON header.
    Safetensors,
    /// Anything else.
    Unknown,
}

/// Tells the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Format {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0x80]) {
        return Format::PyTorch;
    }
    if bytes.len() >= 9 {
        // Only the header's start is checked: `read` sniffs the first 16 bytes of a file.
        let n = u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]);
        if n > 1 && bytes[8] == b'{' {
            return Format::Safetensors;
        }
    }
    Format::Unknown
}

/// A [`WeightSource`] that hands out the tensors of a state dict, checking their shapes,
/// and collects every problem instead of stopping at the first.
pub(crate) struct StateDictSource<'a> {
    sd: &'a StateDict,
    used: BTreeSet<String>,
    problems: Vec<TensorProblem>,
}

impl<'a> StateDictSource<'a> {
    /// A source over `sd` that has handed out nothing yet.
    pub(crate) fn new(sd: &'a StateDict) -> StateDictSource<'a> {
        StateDictSource { sd, used: BTreeSet::new(), problems: Vec::new() }
    }

    /// Every problem found, with the tensors of the file that no one took.
    pub(crate) fn finish(self) -> Result<(), ModelError> {
        let mut problems = self.problems;
        for (name, t) in &self.sd.tensors {
            if !self.used.contains(name) {
                problems.push(TensorProblem::Unexpected { name: name.clone(), found: t.shape.clone() });
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ModelError::Tensors(problems)) }
    }
}

impl WeightSource for StateDictSource<'_> {
    fn take(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>, ModelError> {
        self.used.insert(name.to_string());
        let n: usize = shape.iter().product();
        match self.sd.tensors.get(name) {
            None => self.problems.push(TensorProblem::Missing { name: name.into(), expected: shape.to_vec() }),
            Some(t) if t.shape != shape => self.problems.push(TensorProblem::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                found: t.shape.clone(),
            }),
            Some(t) => return Ok(t.values.clone()),
        }
        // Keep building so that all problems are found in one pass; the model is discarded.
        Ok(vec![0.0; n])
    }
}

impl<B: Backend> Trm<B> {
    /// Builds the network from a state dict. Dataset fields missing from `config` are taken
    /// from tensor shapes (`seq_len` must come from the config or the inputs when the model
    /// uses RoPE or no position encoding). Every missing, unexpected or misshaped tensor is
    /// reported, by name, with expected and found shapes.
    pub fn from_state_dict(config: &TrmConfig, sd: &StateDict, device: &B::Device) -> Result<Trm<B>, ModelError> {
        let mut config = config.clone();
        sd.fill_config(&mut config)?;
        let mut src = StateDictSource::new(sd);
        let model = Trm::build(&config, &mut src, device)?;
        src.finish()?;
        Ok(model)
    }

    /// Reads a checkpoint file (PyTorch or safetensors) into a model.
    #[cfg(feature = "native")]
    pub fn load(config: &TrmConfig, path: &std::path::Path, device: &B::Device) -> Result<Trm<B>, ModelError> {
        let sd = StateDict::read(path)?;
        Trm::from_state_dict(config, &sd, device)
    }

    /// The state dict of this model, in the reference's names and `[out, in]` layouts.
    pub fn to_state_dict(&self) -> StateDict {
        StateDict::from_params(&self.named_params())
    }

    /// Safetensors bytes with the reference's names (`model.inner.*`) and shapes. `H_init`
    /// and `L_init` are bf16 when the config's `forward_dtype` is bfloat16, as the reference
    /// keeps them.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let bf16: &[&str] = if self.config().forward_dtype == "bfloat16" { &["H_init", "L_init"] } else { &[] };
        self.to_state_dict().to_safetensors_bytes(REFERENCE_PREFIX, bf16)
    }

    /// Writes [`Trm::to_safetensors_bytes`] to `path`.
    #[cfg(feature = "native")]
    pub fn save_safetensors(&self, path: &std::path::Path) -> Result<(), ModelError> {
        let bytes = self.to_safetensors_bytes()?;
        std::fs::write(path, bytes).map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })
    }
}
