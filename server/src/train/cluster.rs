//! Training across processes: one `trm train` per node (or per device) started by `mpirun` or
//! `srun`, the gradients summed over the processes with MPI's all-reduce (`--features mpi`).
//!
//! Every process keeps a full replica, trains its share of each global batch (the batch is
//! split over processes × local workers, process-major, as the reference splits it over
//! ranks), sums its local workers' gradients in the process first (burn-collective or the
//! local trainer's own sum), then takes part in one `MPI_Allreduce` of the flattened
//! gradients on host memory. All processes then hold the same summed gradient and take the
//! same optimizer step. Rank 0 alone writes checkpoints, the metrics log and progress.
//!
//! [`Cluster::default`] is a single process: every method is then a no-op, so the trainers
//! use one code path with or without MPI. Without the `mpi` feature nothing here links MPI.

use std::ops::Range;
use std::sync::OnceLock;

use burn::optim::GradientsParams;
use burn::prelude::*;

use super::params::ParamInfo;

/// Why a multi-process run cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Started by an MPI launcher, but this binary has no MPI.
    #[error("started as {0} processes by an MPI launcher, but this trm was built without MPI; rebuild with `cargo build --release -p trm-server --features mpi`")]
    NoMpi(usize),
    /// MPI was initialised already (by something else in this process).
    #[error("MPI is already initialised in this process")]
    AlreadyInitialised,
    /// srun started several tasks but each sees a world of one: no PMI plugin was used.
    #[error("srun started {tasks} tasks but MPI sees a world of {size}; launch with the PMI your MPI uses, e.g. `srun --mpi=pmix trm train ...`")]
    LoneTasks {
        /// Tasks of the srun step.
        tasks: usize,
        /// Size of MPI's world.
        size: usize,
    },
    /// The processes disagree on something that must be equal (config, step, workers).
    #[error("the {size} processes disagree on {what}: every rank must run the same config, run directory and --devices count")]
    Mismatch {
        /// What differs.
        what: String,
        /// Processes in the run.
        size: usize,
    },
    /// A gradient or value could not be read or written back.
    #[error("{0}")]
    Tensor(String),
}

/// This process's place among the processes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cluster {
    rank: usize,
    size: usize,
    local_rank: usize,
}

impl Default for Cluster {
    /// A single process.
    fn default() -> Cluster {
        Cluster { rank: 0, size: 1, local_rank: 0 }
    }
}

/// The cluster [`init`] set up, if any.
static CURRENT: OnceLock<Cluster> = OnceLock::new();

/// Keeps MPI initialised; finalises it when dropped (at the end of `main`).
pub struct MpiGuard {
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
}

/// How many processes an MPI launcher (Open MPI's or MPICH's `mpirun`, Slurm's `srun`) says it
/// started, read from the environment it sets; `None` when none did.
pub fn launched_size() -> Option<usize> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"].iter().find_map(|n| var(n))
}

/// This process's rank among those on its node, as the launcher says (0 when none does).
#[cfg(feature = "mpi")]
fn launched_local_rank() -> usize {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMIX_LOCAL_RANK", "SLURM_LOCALID"].iter().find_map(|n| var(n)).unwrap_or(0)
}

/// Joins the run's processes when an MPI launcher started this one (see [`launched_size`]),
/// and makes that [`Cluster::current`]. Call once, from `main`, before training; keep the
/// guard until the end. `Ok(None)` when not launched by MPI: a single process.
pub fn init() -> Result<Option<MpiGuard>, ClusterError> {
    let Some(launched) = launched_size() else { return Ok(None) };
    #[cfg(not(feature = "mpi"))]
    {
        if launched > 1 {
            return Err(ClusterError::NoMpi(launched));
        }
        Ok(None)
    }
    #[cfg(feature = "mpi")]
    {
        use mpi::traits::Communicator;
        // Serialized: MPI is called from the training thread and, to abort, from `main`,
        // never from two threads at once.
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized).ok_or(ClusterError::AlreadyInitialised)?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if size < launched {
            return Err(ClusterError::LoneTasks { tasks: launched, size });
        }
        let cluster = Cluster { rank, size, local_rank: launched_local_rank() };
        if size > 1 {
            tracing::info!("MPI: rank {rank} of {size}");
        }
        let _ = CURRENT.set(cluster);
        Ok(Some(MpiGuard { _universe: universe }))
    }
}

impl Cluster {
    /// The cluster of this process: the one [`init`] joined, else a single process.
    pub fn current() -> Cluster {
        CURRENT.get().copied().unwrap_or_default()
    }

    /// This process's rank, `0..size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// This process's rank among the run's processes on its machine (`--device-per-rank`).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Processes in the run.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this process writes the run's files (rank 0).
    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Whether more than one process trains.
    pub fn is_multi(&self) -> bool {
        self.size > 1
    }

    /// This process's `workers` shares of a global batch of `rows`: the batch is split into
    /// `size × workers` contiguous ranges as equal as possible, process-major (rank 0's
    /// workers take the first ones).
    pub fn split_rows(&self, rows: usize, workers: usize) -> Vec<Range<usize>> {
        let workers = workers.max(1);
        let n = self.size * workers;
        (self.rank * workers..(self.rank + 1) * workers).map(|i| (i * rows / n)..((i + 1) * rows / n)).collect()
    }

    /// Sums every parameter's gradient over the processes: one all-reduce of the gradients
    /// flattened in `params` order (the model's parameter order: `ParamId`s are random per
    /// process), plus one flag per parameter so that a gradient any process has is kept.
    pub fn sum_grads<B: Backend>(&self, mut grads: GradientsParams, params: &[ParamInfo], device: &B::Device) -> Result<GradientsParams, ClusterError> {
        if !self.is_multi() {
            return Ok(grads);
        }
        let total: usize = params.iter().map(|p| p.shape.iter().product::<usize>()).sum();
        let mut flat = Vec::with_capacity(total + params.len());
        let mut had = Vec::with_capacity(params.len());
        for p in params {
            let n: usize = p.shape.iter().product();
            let values = match p.shape.len() {
                1 => take_grad::<B, 1>(&mut grads, p)?,
                2 => take_grad::<B, 2>(&mut grads, p)?,
                3 => take_grad::<B, 3>(&mut grads, p)?,
                4 => take_grad::<B, 4>(&mut grads, p)?,
                d => return Err(ClusterError::Tensor(format!("{}: {d} axes, at most 4 supported", p.name))),
            };
            had.push(if values.is_some() { 1.0f32 } else { 0.0 });
            match values {
                Some(v) if v.len() == n => flat.extend_from_slice(&v),
                Some(v) => return Err(ClusterError::Tensor(format!("{}: gradient of {} values, expected {n}", p.name, v.len()))),
                None => flat.resize(flat.len() + n, 0.0),
            }
        }
        flat.extend_from_slice(&had);
        let summed = self.all_reduce_f32(&flat);
        let mut out = GradientsParams::new();
        let mut at = 0;
        for (i, p) in params.iter().enumerate() {
            let n: usize = p.shape.iter().product();
            if summed[total + i] > 0.0 {
                let data = TensorData::new(summed[at..at + n].to_vec(), p.shape.clone());
                match p.shape.len() {
                    1 => out.register(p.id, Tensor::<B, 1>::from_data(data, device)),
                    2 => out.register(p.id, Tensor::<B, 2>::from_data(data, device)),
                    3 => out.register(p.id, Tensor::<B, 3>::from_data(data, device)),
                    _ => out.register(p.id, Tensor::<B, 4>::from_data(data, device)),
                }
            }
            at += n;
        }
        Ok(out)
    }

    /// Bytes one [`Cluster::sum_grads`] sends per process for `params` (f32 values and flags).
    pub fn grad_bytes(params: &[ParamInfo]) -> usize {
        4 * (params.iter().map(|p| p.shape.iter().product::<usize>()).sum::<usize>() + params.len())
    }

    /// At the start of a multi-process run: checks that every process agrees on `parts` (a
    /// fingerprint of what `what` names), then the leader logs what each step all-reduces;
    /// `workers` says what each process runs (`"2 devices"`). A single process does nothing.
    pub fn agree_at_start(&self, what: &str, parts: &[&[u8]], params: &[ParamInfo], workers: &str) -> Result<(), ClusterError> {
        if !self.is_multi() {
            return Ok(());
        }
        self.check_same(what, fingerprint(parts))?;
        if self.is_leader() {
            let bytes = Cluster::grad_bytes(params);
            tracing::info!("{} processes x {workers}; each step all-reduces {bytes} bytes of gradients over MPI", self.size);
        }
        Ok(())
    }

    /// Sums `values` over the processes, in place (a step's metric sums, puzzle ids by row).
    #[cfg_attr(not(feature = "mpi"), allow(unused_variables))]
    pub fn sum_scalars(&self, values: &mut [f64]) {
        if !self.is_multi() {
            return;
        }
        #[cfg(feature = "mpi")]
        {
            use mpi::collective::SystemOperation;
            use mpi::traits::CommunicatorCollectives;
            let send = values.to_vec();
            mpi::topology::SimpleCommunicator::world().all_reduce_into(&send[..], values, SystemOperation::sum());
        }
    }

    /// Checks that every process has the same `value` of `what` (a fingerprint of the config,
    /// the step resumed from, the worker count): an error on every process if not.
    #[cfg_attr(not(feature = "mpi"), allow(unused_variables))]
    pub fn check_same(&self, what: &str, value: u64) -> Result<(), ClusterError> {
        if !self.is_multi() {
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        {
            use mpi::collective::SystemOperation;
            use mpi::traits::CommunicatorCollectives;
            let world = mpi::topology::SimpleCommunicator::world();
            let (mut lo, mut hi) = (0u64, 0u64);
            world.all_reduce_into(&value, &mut lo, SystemOperation::min());
            world.all_reduce_into(&value, &mut hi, SystemOperation::max());
            if lo != hi {
                return Err(ClusterError::Mismatch { what: what.to_string(), size: self.size });
            }
        }
        Ok(())
    }

    /// Rank 0's `value`, on every process (the name of a new run directory).
    pub fn broadcast_u64(&self, value: u64) -> u64 {
        #[allow(unused_mut)]
        let mut value = value;
        #[cfg(feature = "mpi")]
        {
            use mpi::traits::{Communicator, Root};
            if self.is_multi() {
                mpi::topology::SimpleCommunicator::world().process_at_rank(0).broadcast_into(&mut value);
            }
        }
        value
    }

    /// Waits until every process gets here (after rank 0 prepared the run directory).
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        {
            use mpi::traits::CommunicatorCollectives;
            if self.is_multi() {
                mpi::topology::SimpleCommunicator::world().barrier();
            }
        }
    }

    /// Ends every process of the run (MPI_Abort) after an error in this one: the others would
    /// otherwise wait in their next all-reduce forever. Returns only in a single process.
    pub fn abort(&self, code: i32) {
        #[cfg(feature = "mpi")]
        {
            use mpi::traits::Communicator;
            if self.is_multi() {
                mpi::topology::SimpleCommunicator::world().abort(code);
            }
        }
        let _ = code;
    }

    fn all_reduce_f32(&self, values: &[f32]) -> Vec<f32> {
        #[allow(unused_mut)]
        let mut out = values.to_vec();
        #[cfg(feature = "mpi")]
        {
            use mpi::collective::SystemOperation;
            use mpi::traits::CommunicatorCollectives;
            mpi::topology::SimpleCommunicator::world().all_reduce_into(values, &mut out[..], SystemOperation::sum());
        }
        out
    }
}

/// The gradient of `p` as f32 host values, removed from `grads`; `None` if it has none.
fn take_grad<B: Backend, const D: usize>(grads: &mut GradientsParams, p: &ParamInfo) -> Result<Option<Vec<f32>>, ClusterError> {
    let Some(g) = grads.remove::<B, D>(p.id) else { return Ok(None) };
    g.into_data().convert::<f32>().into_vec::<f32>().map(Some).map_err(|e| ClusterError::Tensor(format!("reading the gradient of {}: {e:?}", p.name)))
}

/// A 64-bit fingerprint of `parts` (for [`Cluster::check_same`]).
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rank's shares, in rank order, cover the batch once, in order, as equal as possible.
    #[test]
    fn split_rows_covers_the_batch_process_major() {
        for (rows, size, workers) in [(8, 1, 1), (8, 2, 1), (8, 3, 1), (7, 2, 2), (6, 3, 2), (5, 2, 3), (64, 4, 4)] {
            let all: Vec<Range<usize>> = (0..size).flat_map(|rank| Cluster { rank, size, local_rank: 0 }.split_rows(rows, workers)).collect();
            assert_eq!(all.len(), size * workers);
            assert_eq!(all[0].start, 0);
            assert_eq!(all.last().unwrap().end, rows);
            assert!(all.windows(2).all(|w| w[0].end == w[1].start), "{all:?}");
            let (lo, hi) = (all.iter().map(|r| r.len()).min().unwrap(), all.iter().map(|r| r.len()).max().unwrap());
            assert!(hi - lo <= 1, "{rows} rows over {size}x{workers}: {all:?}");
        }
        assert_eq!(Cluster { rank: 1, size: 2, local_rank: 0 }.split_rows(8, 2), vec![4..6, 6..8]);
        assert_eq!(Cluster { rank: 2, size: 3, local_rank: 0 }.split_rows(8, 1), vec![5..8]);
        // One process: the same split as its workers alone.
        assert_eq!(Cluster::default().split_rows(8, 3), vec![0..2, 2..5, 5..8]);
    }

    /// One process: sums change nothing, checks pass, nothing is initialised.
    #[test]
    fn a_single_process_is_a_no_op() {
        let c = Cluster::default();
        assert!(c.is_leader() && !c.is_multi());
        let mut v = [1.0, 2.0];
        c.sum_scalars(&mut v);
        assert_eq!(v, [1.0, 2.0]);
        assert!(c.check_same("config", 7).is_ok());
        assert_eq!(c.broadcast_u64(9), 9);
        assert_ne!(fingerprint(&[b"a", b"bc"]), fingerprint(&[b"ab", b"c"]));
    }
}
