//! Choosing a burn backend at run time, in one place for every command: the `--backend`
//! value, the probes that check it can run here (cores, the CUDA driver, a wgpu adapter), the
//! devices it trains on, and the dispatch to the backend's type.
//!
//! The CPU backend is burn's Flex: pure Rust, SIMD (AVX2/AVX-512/NEON), multi-threaded gemm
//! matmuls and a tiled attention kernel. It is the fastest CPU backend burn 0.21 offers that
//! builds here: burn-cpu (CubeCL/LLVM JIT) needs an LLVM download at build time, and
//! ndarray is deprecated and slower (see docs/rust-stack.md). wgpu and cuda are cargo features.

pub mod cuda_probe;
pub mod devices;
#[cfg(feature = "wgpu")]
pub mod wgpu_probe;

#[allow(unused_imports)]
use anyhow::{Context, bail};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use clap::ValueEnum;
use trm_shared::model::TrmConfig;
use trm_shared::model::cpu::linear::MatmulPrecision;

use devices::DeviceSet;

/// Backends a command can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// burn Flex on the CPU, f32.
    Cpu,
    /// burn wgpu (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
    /// burn CUDA; needs the `cuda` cargo feature and libcuda/libnvrtc at run time.
    Cuda,
}

/// Work that runs on whichever backend was chosen (Rust has no generic closures).
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`.
    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<Self::Output>;
}

/// Work that trains on whichever backend was chosen: `B` is the backend under autodiff.
pub trait TrainJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`, `device` being the first of the run's devices.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

/// Checks that `kind` can run on this machine with `devices`, so that every command fails
/// with the same one-line error instead of a panic inside burn: on the CPU, at most one
/// worker per core; on CUDA, the driver and nvrtc load and every index exists; on wgpu, an
/// adapter exists. A backend this binary was built without is named with how to get it.
pub fn probe(kind: BackendKind, devices: &DeviceSet) -> anyhow::Result<()> {
    match kind {
        BackendKind::Cpu => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Ok(devices.check_against(cores, "the CPU (one worker per core at most)")?)
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let count = once(&CUDA_DEVICES, || cuda_probe::cuda_device_count().map_err(|e| e.to_string())).context("--backend cuda")?;
                Ok(devices.check_against(count, "this machine's CUDA driver")?)
            }
            #[cfg(not(feature = "cuda"))]
            bail!("this trm was built without CUDA; rebuild with `cargo build --release -p trm-server --features cuda`")
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                once(&WGPU_ADAPTER, || {
                    let adapter = wgpu_probe::default_adapter().map_err(|e| e.to_string())?;
                    tracing::info!("wgpu adapter: {}", wgpu_probe::describe(&adapter));
                    Ok(())
                })
                .context("--backend wgpu")
            }
            #[cfg(not(feature = "wgpu"))]
            bail!("this trm was built without wgpu; rebuild with `cargo build --release -p trm-server --features wgpu`")
        }
    }
}

// The driver and the adapter do not come or go while the process runs, and every model the
// server loads and every job it runs probes again: each is asked once, its answer kept.
#[cfg(feature = "cuda")]
static CUDA_DEVICES: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();
#[cfg(feature = "wgpu")]
static WGPU_ADAPTER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// The kept answer of a probe, asking it on the first call.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn once<T: Clone>(cell: &std::sync::OnceLock<Result<T, String>>, ask: impl FnOnce() -> Result<T, String>) -> anyhow::Result<T> {
    cell.get_or_init(ask).clone().map_err(anyhow::Error::msg)
}

/// Runs `job` on the backend `kind` (its default device) after [`probe`], or explains why not.
pub fn with_backend<J: BackendJob>(kind: BackendKind, job: J) -> anyhow::Result<J::Output> {
    probe(kind, &DeviceSet::default())?;
    match kind {
        BackendKind::Cpu => job.run::<burn::backend::Flex>(Default::default(), "cpu (flex)"),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => job.run::<burn::backend::Wgpu>(Default::default(), "wgpu"),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => job.run::<burn::backend::Cuda>(Default::default(), "cuda"),
        #[allow(unreachable_patterns)]
        other => bail!("{other:?} is not built into this trm"),
    }
}

/// Runs a training `job` on `kind` under autodiff after [`probe`]: on the first of `devices`
/// (a GPU index; on the CPU the workers are threads over the one device).
pub fn with_train_backend<J: TrainJob>(kind: BackendKind, devices: &DeviceSet, job: J) -> anyhow::Result<J::Output> {
    probe(kind, devices)?;
    #[allow(unused_variables)]
    let first = devices.indices().first().copied().unwrap_or(0);
    match kind {
        BackendKind::Cpu => job.run::<burn::backend::Autodiff<burn::backend::Flex>>(Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => job.run::<burn::backend::Autodiff<burn::backend::Cuda>>(burn::backend::cuda::CudaDevice::new(first)),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            // Device 0 alone: whatever adapter wgpu prefers; listed indices: discrete GPUs.
            let device = if *devices == DeviceSet::default() {
                burn::backend::wgpu::WgpuDevice::DefaultDevice
            } else {
                burn::backend::wgpu::WgpuDevice::DiscreteGpu(first)
            };
            job.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(device)
        }
        #[allow(unreachable_patterns)]
        other => bail!("{other:?} is not built into this trm"),
    }
}

/// `--matmul`, for every command that runs a model (flattened into its arguments).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Matmul {
    /// How the CPU's matmuls multiply (linear layers and attention, forward and backward):
    /// f32, the reference's f32 numbers; or bf16, operands rounded to bf16 and sums in f32
    /// like the reference's bf16 recipe (needs AVX-512 BF16; steps of the 7M model 1.75-1.9x
    /// faster). --backend cpu only.
    #[arg(long = "matmul", default_value_t = MatmulPrecision::F32)]
    pub precision: MatmulPrecision,
}

impl Matmul {
    /// Sets it for this process: bf16 is for `--backend cpu` only (a GPU computes in the
    /// config's `forward_dtype`) and needs a CPU with AVX-512 BF16; either missing is one
    /// clear error.
    pub fn apply(self, kind: BackendKind) -> anyhow::Result<()> {
        let precision = self.precision;
        if precision != MatmulPrecision::F32 && kind != BackendKind::Cpu {
            bail!("--matmul {precision} is for --backend cpu (a GPU computes in the config's forward_dtype)");
        }
        trm_shared::model::cpu::linear::set_matmul_precision(precision).context("--matmul")
    }
}

/// The dtype a model computes in on backend `B` (weights stay f32 either way): the config's
/// `forward_dtype` on CUDA, as the reference trains and evaluates (bf16 there); f32 on the
/// CPU, where Flex would only round every bf16 op through f32 (slower, nothing gained), and on
/// wgpu, where WebGPU has no bf16.
pub fn compute_dtype<B: Backend>(cfg: &TrmConfig) -> anyhow::Result<burn::tensor::FloatDType> {
    // Checked on every backend, so that a bad value fails on the CPU too.
    let configured = cfg.forward_float_dtype()?;
    Ok(if is_cuda::<B>() { configured } else { burn::tensor::FloatDType::F32 })
}

/// Whether `B` is burn's CUDA backend, plain or under autodiff.
fn is_cuda<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    {
        use std::any::TypeId;
        type Cuda = burn::backend::Cuda;
        TypeId::of::<B>() == TypeId::of::<Cuda>() || TypeId::of::<B>() == TypeId::of::<burn::backend::Autodiff<Cuda>>()
    }
    #[cfg(not(feature = "cuda"))]
    false
}
