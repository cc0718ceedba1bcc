//! The all-reduce of a data-parallel step within one process, through burn's own collective
//! operations (`burn-collective` 0.21, local mode): one peer per worker, gradients summed
//! across every peer of this process. Across processes the sum goes through MPI
//! ([`super::cluster`]); burn-collective's global mode is not used (its barrier hangs in 0.21.0).
//!
//! burn-collective keeps one local collective server per backend type and process, and a
//! peer blocks in `register` and in each `all_reduce` until every peer has called it. Hence:
//! - one [`Group`] per backend type at a time: a second one waits for the first to end
//!   ([`Claim`]), or its peers would join the first group's operations;
//! - every peer reduces the same tensors in the same order: the model's parameters in field
//!   order, a zero tensor standing in for a gradient a peer lacks, so that a worker whose step
//!   failed still answers and no peer waits forever.

use std::any::TypeId;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use anyhow::{Context, anyhow};
use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;

use super::params::ParamInfo;

/// Backend types whose collective server a [`Group`] holds.
static CLAIMED: Mutex<Option<HashSet<TypeId>>> = Mutex::new(None);
static RELEASED: Condvar = Condvar::new();

/// This process's hold on the collective server of backend type `id`, released on drop.
struct Claim {
    id: TypeId,
}

impl Claim {
    fn take(id: TypeId) -> Claim {
        let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let set = claimed.get_or_insert_with(HashSet::new);
            if set.insert(id) {
                return Claim { id };
            }
            tracing::info!("waiting for another data-parallel run on this backend to end");
            claimed = RELEASED.wait(claimed).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = claimed.as_mut() {
            set.remove(&self.id);
        }
        RELEASED.notify_all();
    }
}

/// The peers of one data-parallel run in this process (`B` is the inner, non-autodiff
/// backend: gradients live there). With one local device there is nothing to reduce and
/// burn-collective is not used.
pub struct Group<B: Backend> {
    local: usize,
    registered: AtomicBool,
    claim: Option<Claim>,
    _backend: PhantomData<B>,
}

impl<B: Backend> Group<B> {
    /// A group of `local` peers in this process.
    pub fn new(local: usize) -> Group<B> {
        let local = local.max(1);
        let claim = (local > 1).then(|| {
            let claim = Claim::take(TypeId::of::<B>());
            // Peers a run left registered when it died mid-step would join ours.
            collective::reset_collective::<B>();
            claim
        });
        Group { local, registered: AtomicBool::new(false), claim, _backend: PhantomData }
    }

    /// Whether steps go through burn-collective (more than one peer in the run).
    pub fn active(&self) -> bool {
        self.claim.is_some()
    }

    /// Whether the peers have registered (after the first step).
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    fn peer(&self, w: usize) -> PeerId {
        PeerId::from(w)
    }

    /// Registers local worker `w` on `device`. Blocks until every local peer has registered:
    /// call it from all workers at once.
    pub fn register(&self, w: usize, device: B::Device) -> anyhow::Result<()> {
        let config = CollectiveConfig::default().with_num_devices(self.local);
        collective::register::<B>(self.peer(w), device, config)
            .map_err(|e| anyhow!("burn-collective register of worker {w}: {e:?}"))?;
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    /// Sums every parameter's gradient over all peers, in `params` order. `grads` is `None`
    /// when this worker's step failed: it then contributes zeros and gets `None` back.
    pub fn all_reduce_grads(&self, w: usize, grads: Option<GradientsParams>, params: &[ParamInfo], device: &B::Device) -> anyhow::Result<Option<GradientsParams>> {
        let peer = self.peer(w);
        let mut out = grads.as_ref().map(|_| GradientsParams::new());
        let mut grads = grads.unwrap_or_default();
        for p in params {
            match p.shape.len() {
                1 => reduce_one::<B, 1>(peer, &mut grads, out.as_mut(), p, device),
                2 => reduce_one::<B, 2>(peer, &mut grads, out.as_mut(), p, device),
                3 => reduce_one::<B, 3>(peer, &mut grads, out.as_mut(), p, device),
                _ => reduce_one::<B, 4>(peer, &mut grads, out.as_mut(), p, device),
            }
            .with_context(|| format!("all-reduce of the gradient of {}", p.name))?;
        }
        Ok(out)
    }
}

impl<B: Backend> Drop for Group<B> {
    fn drop(&mut self) {
        if !(self.active() && self.is_registered()) {
            return;
        }
        for w in 0..self.local {
            if let Err(e) = collective::finish_collective::<B>(self.peer(w)) {
                tracing::warn!("burn-collective finish of worker {w}: {e:?}");
            }
        }
    }
}

/// All-reduces (sum) one parameter's gradient; a missing one counts as zeros. The sum is kept
/// only where this peer had a gradient (a parameter no peer trains stays without one).
fn reduce_one<B: Backend, const D: usize>(
    peer: PeerId,
    grads: &mut GradientsParams,
    out: Option<&mut GradientsParams>,
    p: &ParamInfo,
    device: &B::Device,
) -> anyhow::Result<()> {
    let mine = grads.remove::<B, D>(p.id);
    let had = mine.is_some();
    let shape: [usize; D] = p.shape.clone().try_into().map_err(|_| anyhow!("{} has {} axes, expected {D}", p.name, p.shape.len()))?;
    let t = mine.unwrap_or_else(|| Tensor::zeros(shape, device));
    let sum = collective::all_reduce::<B>(peer, t.into_primitive().tensor(), ReduceOperation::Sum).map_err(|e| anyhow!("{e:?}"))?;
    if let (true, Some(out)) = (had, out) {
        out.register(p.id, Tensor::<B, D>::from_primitive(TensorPrimitive::Float(sum)));
    }
    Ok(())
}
