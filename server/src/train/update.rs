//! One optimizer update after a step's backward pass, as `train_batch` in `pretrain.py`:
//! AdamATan2 on every trainable weight and SignSGD on the puzzle-embedding rows of the
//! step's puzzles. The two touch disjoint tensors, so their order does not matter.

use std::collections::HashSet;

use burn::module::ParamId;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use trm_shared::model::Trm;

use super::optim::{AdamAtan2, SignSgd};

/// Parameters that are buffers in the reference: `H_init`, `L_init` (never trained) and the
/// puzzle embedding (trained by SignSGD). AdamATan2 and the EMA leave them alone.
pub fn buffer_ids<B: Backend>(trm: &Trm<B>) -> HashSet<ParamId> {
    let mut s = HashSet::from([trm.h_init.id, trm.l_init.id]);
    if let Some(p) = &trm.puzzle_emb {
        s.insert(p.id);
    }
    s
}

/// `trm` ready for training: `H_init` / `L_init` get no gradient, so no optimizer moves them.
pub fn freeze_buffers<B: AutodiffBackend>(mut trm: Trm<B>) -> Trm<B> {
    trm.h_init = trm.h_init.clone().set_require_grad(false);
    trm.l_init = trm.l_init.clone().set_require_grad(false);
    trm
}

/// Applies one step's gradients (of `loss / global_batch`): AdamATan2 at `lr` on the weights,
/// then SignSGD at `lr_pe` on the puzzle-embedding rows of `puzzle_ids` (the ids of every row
/// the step trained on; a repeated id's gradients are already summed by the gather's backward).
pub fn apply_update<B: AutodiffBackend>(
    trm: Trm<B>,
    optim: &mut OptimizerAdaptor<AdamAtan2, Trm<B>, B>,
    sign: &SignSgd,
    mut grads: GradientsParams,
    puzzle_ids: &[i64],
    lr: f64,
    lr_pe: f64,
) -> Trm<B> {
    let pe_grad = trm.puzzle_emb.as_ref().and_then(|p| grads.remove::<B::InnerBackend, 2>(p.id));
    let mut trm = optim.step(lr, trm, grads);
    if let (Some(g), Some(p)) = (pe_grad, trm.puzzle_emb.take()) {
        let w = p.val();
        let ([n_ids, _], device) = (w.dims(), w.device());
        let mut present = vec![0i32; n_ids];
        for &i in puzzle_ids {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| present.get_mut(i)) {
                *slot = 1;
            }
        }
        let present = Tensor::<B::InnerBackend, 1, Int>::from_data(TensorData::new(present, [n_ids]), &device).equal_elem(1);
        trm.puzzle_emb = Some(p.map(|w| Tensor::from_inner(sign.step(lr_pe, w.inner(), g, present)).require_grad()));
    }
    trm
}
