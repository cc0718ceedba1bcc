//! The Tiny Recursive Model in burn, generic over the backend (Flex on CPU and in the
//! browser, wgpu, CUDA), numerically the reference PyTorch model.
//!
//! - [`config`]: the reference's config fields; reads its `all_config.yaml` and our TOML.
//! - [`trm`]: the network and the recursion, in one file.
//! - [`weights`]: the checkpoint's tensor names; each module takes and exports its own.
//! - [`ops`]: attention and SwiGLU's gate, on the Flex kernels or burn's ops.
//! - [`act`]: the ACT wrapper of training (carry, halting, exploration).
//! - [`steps`]: inference's ACT loop, one step at a time, for both families.
//! - [`checkpoint`]: reference checkpoints (`torch.save` files, safetensors) in and out;
//!   `torch` reads the `torch.save` zips, bounded against crafted files.
//! - [`predict`]: batched inference keeping the answer after every ACT step.
//! - [`local`]: the size-general TRM (a local 2D mixer instead of attention), any maze size.
//! - [`load`]: a model of either family from its files or bytes, its config resolved once.
//! - `cpu` (native builds): the attention and SwiGLU kernels [`ops`] uses on the Flex backend.

pub mod act;
pub mod checkpoint;
pub mod config;
#[cfg(all(feature = "native", not(target_family = "wasm")))]
pub mod cpu;
pub mod init;
pub mod load;
pub mod local;
pub mod ops;
pub mod predict;
pub mod steps;
pub(crate) mod torch;
pub mod trm;
pub mod weights;

pub use act::{ActCarry, ActMode, ActModel, ActStep, Inference, run_inference};
pub use checkpoint::{HostTensor, StateDict, TensorProblem};
pub use config::{DataSizes, PosEncoding, TrmConfig};
pub use init::RandomInit;
#[cfg(feature = "native")]
pub use load::load_files;
pub use load::{AnyModel, MazeSize, ModelConfig, Unresolved};
pub use local::{GridShape, LocalConfig, LocalTrm, run_steps, solve};
pub use predict::{PredictOptions, Predictions, predict, predict_local};
pub use steps::{ActRun, Halting, RunOutput, RunStep};
pub use trm::{InnerCarry, StepOutput, Trm};
pub use weights::{NamedParam, NamedParams};

/// The CPU backend: burn's pure-Rust Flex, f32, multi-threaded matmuls on native targets.
pub type Cpu = burn::backend::Flex;

/// Everything that can go wrong building, loading, saving or running the model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A config that cannot be read or that the model cannot be built from.
    #[error("config: {0}")]
    Config(String),
    /// A file that cannot be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A checkpoint that is not a valid file of its format (truncated, corrupt, unknown).
    #[error("{source_name}: not a readable checkpoint: {message}")]
    Format { source_name: String, message: String },
    /// Tensors missing, unexpected or of the wrong shape, all of them listed.
    #[error("checkpoint does not fit the model:\n  {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Tensors(Vec<TensorProblem>),
    /// A tensor stored in a dtype we cannot turn into f32.
    #[error("tensor {name}: unsupported dtype {dtype}")]
    Dtype { name: String, dtype: String },
    /// Inputs that do not fit the model (shape, token or puzzle id out of range).
    #[error("inputs: {0}")]
    Input(String),
    /// A step's outputs that could not be read back from the device.
    #[error("reading the model's outputs: {0}")]
    Read(String),
}
