//! The reference's two optimizers.
//!
//! - [`AdamAtan2`] for every trainable weight, as a burn [`SimpleOptimizer`] (so burn's
//!   `OptimizerAdaptor` walks the module and keeps one state per parameter). Per element,
//!   exactly as the spec writes the `adam-atan2` kernel:
//!   ```text
//!   p *= 1 − lr·wd
//!   m = lerp(m, g, 1−β1);  v = lerp(v, g², 1−β2)
//!   p −= lr/(1−β1^t) · atan2(m, √v / √(1−β2^t))
//!   ```
//!   No epsilon: `atan2` is bounded, so a zero `v` cannot blow the step up.
//! - [`SignSgd`] for the puzzle embedding (`CastedSparseEmbeddingSignSGD_Distributed`):
//!   only the rows of puzzles present in the batch change, `w = w·(1 − lr·wd) − lr·sign(g)`,
//!   with `g` the gradient summed per puzzle id.
//!
//! [`moments_to_state_dict`] and [`moments_from_state_dict`] carry AdamATan2's state through
//! checkpoints, by the parameters' checkpoint names.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{LearningRate, Optimizer, SimpleOptimizer};
use burn::prelude::*;
use burn::record::Record;
use burn::tensor::backend::AutodiffBackend;
use trm_shared::model::weights::Layout;
use trm_shared::model::{NamedParams, StateDict};

use super::params::{field_path, param_infos};

/// AdamATan2 hyper-parameters (the reference's `beta1`, `beta2`, `weight_decay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamAtan2 {
    /// First-moment rate β1.
    pub beta1: f64,
    /// Second-moment rate β2.
    pub beta2: f64,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f64,
}

/// Per-parameter state: the step count and both moments.
#[derive(Record, Clone, Debug)]
pub struct AdamAtan2State<B: Backend, const D: usize> {
    /// Steps taken, `t` of the bias corrections.
    pub time: usize,
    /// First moment `m`.
    pub exp_avg: Tensor<B, D>,
    /// Second moment `v`.
    pub exp_avg_sq: Tensor<B, D>,
}

impl<B: Backend> SimpleOptimizer<B> for AdamAtan2 {
    type State<const D: usize> = AdamAtan2State<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (time, m, v) = match state {
            Some(s) => (s.time + 1, s.exp_avg, s.exp_avg_sq),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let (b1, b2) = (self.beta1, self.beta2);
        // lerp(a, b, w) = a + w·(b − a), as torch computes it.
        let m = m.clone() + (grad.clone() - m).mul_scalar(1.0 - b1);
        let v = v.clone() + (grad.square() - v).mul_scalar(1.0 - b2);
        let bias1 = 1.0 - b1.powi(time as i32);
        let bias2_sqrt = (1.0 - b2.powi(time as i32)).sqrt();
        let decayed = tensor.mul_scalar(1.0 - lr * self.weight_decay);
        let direction = m.clone().atan2(v.clone().sqrt().div_scalar(bias2_sqrt));
        let updated = decayed - direction.mul_scalar(lr / bias1);
        (updated, Some(AdamAtan2State { time, exp_avg: m, exp_avg_sq: v }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        AdamAtan2State {
            time: state.time,
            exp_avg: state.exp_avg.to_device(device),
            exp_avg_sq: state.exp_avg_sq.to_device(device),
        }
    }
}

/// AdamATan2's moments for a checkpoint: `{name}.exp_avg` and `{name}.exp_avg_sq` in the
/// layout checkpoints hold `{name}` in, and each parameter's step count by name.
/// Parameters the optimizer never stepped (buffers, the SignSGD-trained puzzle embedding)
/// have neither.
pub fn moments_to_state_dict<B: AutodiffBackend, M: AutodiffModule<B> + NamedParams<B>>(
    optim: &OptimizerAdaptor<AdamAtan2, M, B>,
    model: &M,
) -> (StateDict, BTreeMap<String, usize>) {
    let mut records = optim.to_record();
    let mut sd = StateDict::default();
    let mut times = BTreeMap::new();
    for info in param_infos(model) {
        let Some(record) = records.remove(&info.id) else { continue };
        let (time, m, v) = unpack(record, info.shape.len());
        sd.tensors.insert(format!("{}.exp_avg", info.name), info.layout.to_stored(m));
        sd.tensors.insert(format!("{}.exp_avg_sq", info.name), info.layout.to_stored(v));
        times.insert(info.name, time);
    }
    (sd, times)
}

/// `optim` with the moments [`moments_to_state_dict`] saved for `model`'s parameters. Also
/// reads checkpoints written before the moments took the checkpoint's names: keyed by burn's
/// field paths, in burn's layout ([`field_path`]).
pub fn moments_from_state_dict<B: AutodiffBackend, M: AutodiffModule<B> + NamedParams<B>>(
    optim: OptimizerAdaptor<AdamAtan2, M, B>,
    model: &M,
    sd: &StateDict,
    times: &BTreeMap<String, usize>,
    device: &B::Device,
) -> anyhow::Result<OptimizerAdaptor<AdamAtan2, M, B>> {
    let infos = param_infos(model);
    // An old checkpoint names every moment by its field path: one such name tells.
    let old_names = infos.iter().any(|p| field_path(&p.name) != p.name && times.contains_key(&field_path(&p.name)));
    let mut records = optim.to_record();
    for info in infos {
        let (key, layout) = if old_names { (field_path(&info.name), Layout::Same) } else { (info.name.clone(), info.layout) };
        let Some(&time) = times.get(&key) else { continue };
        let get = |suffix: &str| -> anyhow::Result<TensorData> {
            let name = format!("{key}.{suffix}");
            let t = sd.tensors.get(&name).with_context(|| format!("optimizer state lacks {name}"))?;
            let expected = layout.stored_shape(&info.shape);
            if t.shape != expected {
                bail!("optimizer state {name} has shape {:?}, the model {expected:?}", t.shape);
            }
            Ok(layout.from_stored(t))
        };
        records.insert(info.id, pack(time, get("exp_avg")?, get("exp_avg_sq")?, device));
    }
    Ok(optim.load_record(records))
}

/// A parameter's step count and moments (burn's layout) from its record; the models'
/// parameters have one or two axes.
fn unpack<B: AutodiffBackend>(record: AdaptorRecord<AdamAtan2, B>, rank: usize) -> (usize, TensorData, TensorData) {
    if rank == 1 {
        let s = record.into_state::<1>();
        (s.time, s.exp_avg.into_data(), s.exp_avg_sq.into_data())
    } else {
        let s = record.into_state::<2>();
        (s.time, s.exp_avg.into_data(), s.exp_avg_sq.into_data())
    }
}

/// The record [`unpack`] reads.
fn pack<B: AutodiffBackend>(time: usize, m: TensorData, v: TensorData, device: &B::Device) -> AdaptorRecord<AdamAtan2, B> {
    if m.shape.len() == 1 {
        AdaptorRecord::from_state::<1>(AdamAtan2State { time, exp_avg: Tensor::from_data(m, device), exp_avg_sq: Tensor::from_data(v, device) })
    } else {
        AdaptorRecord::from_state::<2>(AdamAtan2State { time, exp_avg: Tensor::from_data(m, device), exp_avg_sq: Tensor::from_data(v, device) })
    }
}

/// SignSGD for the puzzle embedding, with its own learning rate (given per step, from the
/// shared schedule) and weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignSgd {
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl SignSgd {
    /// One step on the `[N, D]` table. `grad` is the table's gradient (already summed per
    /// row, as a gather's backward gives it); `present` flags the `[N]` rows whose puzzle
    /// was in the batch — the reference updates only those, decay included.
    pub fn step<B: Backend>(
        &self,
        lr: f64,
        weights: Tensor<B, 2>,
        grad: Tensor<B, 2>,
        present: Tensor<B, 1, Bool>,
    ) -> Tensor<B, 2> {
        let [n, d] = weights.dims();
        let updated = weights.clone().mul_scalar(1.0 - lr * self.weight_decay) - grad.sign().mul_scalar(lr);
        weights.mask_where(present.reshape([n, 1]).expand([n, d]), updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::CpuTrain;
    use burn::backend::Flex;
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use trm_shared::model::{RandomInit, Trm, TrmConfig};

    type B = Flex;

    fn vals<const D: usize, BB: Backend>(t: Tensor<BB, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().iter::<f64>().collect()
    }

    /// The spec's formula on the host in f64, one scalar.
    fn reference(p: &mut f64, m: &mut f64, v: &mut f64, g: f64, t: i32, lr: f64, o: &AdamAtan2) {
        *p *= 1.0 - lr * o.weight_decay;
        *m += (1.0 - o.beta1) * (g - *m);
        *v += (1.0 - o.beta2) * (g * g - *v);
        *p -= lr / (1.0 - o.beta1.powi(t)) * m.atan2(v.sqrt() / (1.0 - o.beta2.powi(t)).sqrt());
    }

    #[test]
    fn adam_atan2_first_step_by_hand() {
        // t = 1: m = 0.1 g, v = 0.05 g², √v/√(1−β2) = |g|; m is corrected outside atan2:
        // p1 = p0 (1 − lr wd) − lr/0.1 · atan2(0.1 g, |g|) = ... − 10 lr · atan(0.1) · sign(g).
        let opt = AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.5 };
        let p: Tensor<B, 1> = Tensor::from_floats([1.0, -2.0, 0.5], &Default::default());
        let g: Tensor<B, 1> = Tensor::from_floats([3.0, -0.25, 0.0], &Default::default());
        let lr = 0.1;
        let (p1, state) = opt.step(lr, p, g, None);
        let got = vals(p1);
        let q = 10.0 * 0.1f64.atan();
        // g = 0: atan2(0, 0) = 0, only the decay acts.
        let want = [1.0 * 0.95 - 0.1 * q, -2.0 * 0.95 + 0.1 * q, 0.5 * 0.95];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(state.unwrap().time, 1);
    }

    #[test]
    fn adam_atan2_second_step_by_hand() {
        // β1 0.9, β2 0.95, lr 0.1, wd 0.5 (decay factor 0.95 per step), p0 = 1, g = +1 then −1.
        // t = 1: m = 0.1, v = 0.05, √v/√(1−0.95) = 1 → p1 = 0.95 − (0.1/0.1)·atan(0.1) = 0.850331347...
        // t = 2: m = 0.9·0.1 + 0.1·(−1) = −0.01; v = 0.95·0.05 + 0.05·1 = 0.0975;
        //        1 − β2² = 0.0975, so √v/√(1−β2²) = 1; 1 − β1² = 0.19:
        //        p2 = 0.95·p1 − (0.1/0.19)·atan2(−0.01, 1) = 0.80781478 + 0.00526298 = 0.813077763...
        // (At t = 1 the update is lr·atan(0.1)·sign(g) for any |g|; t = 2 is the first step
        // where β2 and both bias corrections show.)
        let opt = AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.5 };
        let dev = Default::default();
        let p: Tensor<B, 1> = Tensor::from_floats([1.0], &dev);
        let (p1, s1) = opt.step(0.1, p, Tensor::from_floats([1.0], &dev), None);
        let got1 = vals(p1.clone())[0];
        assert!((got1 - 0.850_331_347_5).abs() < 1e-6, "{got1}");
        let (p2, s2) = opt.step(0.1, p1, Tensor::from_floats([-1.0], &dev), s1);
        let got2 = vals(p2)[0];
        assert!((got2 - 0.813_077_762_6).abs() < 1e-6, "{got2}");
        let s2 = s2.unwrap();
        assert_eq!(s2.time, 2);
        assert!((vals(s2.exp_avg)[0] + 0.01).abs() < 1e-7);
        assert!((vals(s2.exp_avg_sq)[0] - 0.0975).abs() < 1e-7);
    }

    #[test]
    fn adam_atan2_matches_the_formula_over_several_steps() {
        let opt = AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 1.0 };
        let grads = [[0.5, -1.0], [0.25, 2.0], [-0.75, 0.0], [1e-8, -3.0]];
        let lrs = [1e-2, 5e-3, 2e-2, 1e-3];
        let mut p: Tensor<B, 1> = Tensor::from_floats([0.3, -0.7], &Default::default());
        let mut state = None;
        let mut host = [(0.3f64, 0.0f64, 0.0f64), (-0.7, 0.0, 0.0)];
        for (t, (g, lr)) in grads.iter().zip(lrs).enumerate() {
            let gt: Tensor<B, 1> = Tensor::from_floats(*g, &Default::default());
            let (np, ns) = opt.step(lr, p, gt, state);
            p = np;
            state = ns;
            for (i, h) in host.iter_mut().enumerate() {
                reference(&mut h.0, &mut h.1, &mut h.2, g[i], t as i32 + 1, lr, &opt);
            }
        }
        let got = vals(p);
        for (a, h) in got.iter().zip(host) {
            assert!((a - h.0).abs() < 1e-6, "{got:?} vs {host:?}");
        }
        let s = state.unwrap();
        assert_eq!(s.time, 4);
        let m = vals(s.exp_avg);
        assert!((m[0] - host[0].1).abs() < 1e-7 && (m[1] - host[1].1).abs() < 1e-7);
    }

    #[derive(Module, Debug)]
    struct Tiny<B: Backend> {
        w: Param<Tensor<B, 2>>,
    }

    #[test]
    fn adaptor_drives_it_through_a_module() {
        type A = CpuTrain;
        let dev = Default::default();
        let model = Tiny::<A> { w: Param::from_tensor(Tensor::from_floats([[1.0, 2.0], [3.0, 4.0]], &dev)) };
        let mut optim: OptimizerAdaptor<AdamAtan2, Tiny<A>, A> =
            OptimizerAdaptor::from(AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.0 });
        // loss = Σ w · c → grad = c.
        let c = Tensor::<A, 2>::from_floats([[1.0, -1.0], [0.0, 2.0]], &dev);
        let grads = (model.w.val() * c).sum().backward();
        let grads = GradientsParams::from_grads(grads, &model);
        let model = optim.step(0.01, model, grads);
        let got = vals(model.w.val());
        let q = 0.01 * 10.0 * 0.1f64.atan();
        let want = [1.0 - q, 2.0 + q, 3.0, 4.0 - q];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn sign_sgd_takes_the_sign_of_each_puzzles_summed_gradient() {
        // The reference sums the rows' gradients per unique puzzle id, then takes the sign.
        // Rows 0 and 1 are both puzzle 0 with gradients (0.3, 1) and (−0.5, 1): the sum
        // (−0.2, 2) has signs (−, +), where row 0 alone would give (+, +). Puzzle 1 gets (2, −1);
        // puzzle 2 is absent. lr 0.1, wd 1: present rows become 0.9·w − 0.1·sign(Σg).
        type A = CpuTrain;
        let dev = Default::default();
        let table = Tensor::<A, 2>::from_floats([[1.0, 1.0], [2.0, -2.0], [3.0, 3.0]], &dev).require_grad();
        let ids = Tensor::<A, 1, Int>::from_ints([0, 0, 1], &dev);
        let c = Tensor::<A, 2>::from_floats([[0.3, 1.0], [-0.5, 1.0], [2.0, -1.0]], &dev);
        let grads = (table.clone().select(0, ids) * c).sum().backward();
        let g = table.grad(&grads).unwrap();
        let present = Tensor::<B, 1, Int>::from_ints([1, 1, 0], &dev).equal_elem(1);
        let got = vals(SignSgd { weight_decay: 1.0 }.step(0.1, table.inner(), g, present));
        let want = [0.9 + 0.1, 0.9 - 0.1, 1.8 - 0.1, -1.8 + 0.1, 3.0, 3.0];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn sign_sgd_updates_present_rows_only() {
        let opt = SignSgd { weight_decay: 0.5 };
        let dev = Default::default();
        let w: Tensor<B, 2> = Tensor::from_floats([[1.0, -1.0], [2.0, 0.0], [4.0, 4.0]], &dev);
        let g: Tensor<B, 2> = Tensor::from_floats([[0.3, -7.0], [0.0, 0.0], [1.0, 1.0]], &dev);
        let present = Tensor::<B, 1, Int>::from_ints([1, 1, 0], &dev).equal_elem(1);
        let got = vals(opt.step(0.1, w, g, present));
        // Row 0: w·0.95 − 0.1·sign(g); row 1 present with zero gradient: decay only;
        // row 2 absent: untouched.
        let want = [0.95 - 0.1, -0.95 + 0.1, 1.9, 0.0, 4.0, 4.0];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn moments_round_trip_by_checkpoint_name_and_old_field_paths_still_resume() {
        type A = CpuTrain;
        let dev = Default::default();
        // One recursion round, so that every parameter has a gradient (H_init and L_init too).
        let config = TrmConfig { h_cycles: 1, ..TrmConfig::tiny(4, 2) };
        let trm = Trm::<A>::build(&config, &mut RandomInit::new(1), &dev).unwrap();
        let adam = AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.1 };
        let mut optim: OptimizerAdaptor<AdamAtan2, Trm<A>, A> = OptimizerAdaptor::from(adam);
        let inputs = Tensor::<A, 2, Int>::from_ints([[1, 2, 3, 4], [2, 2, 1, 5]], &dev);
        let (_, out) = trm.forward(trm.initial_carry(2), inputs, Tensor::from_ints([0, 1], &dev));
        let grads = GradientsParams::from_grads((out.logits.sum() + out.q_halt.sum()).backward(), &trm);
        let trm = optim.step(1e-3, trm, grads);
        let (saved, times) = moments_to_state_dict(&optim, &trm);
        assert_eq!(times.len(), param_infos(&trm).len());
        // Laid out as model.safetensors holds the weights: lm_head is [vocab, hidden] there.
        assert_eq!(saved.shape("lm_head.weight.exp_avg"), Some([6, 16].as_slice()));
        assert_eq!(saved.shape("L_level.layers.0.self_attn.qkv_proj.weight.exp_avg_sq"), Some([48, 16].as_slice()));

        let fresh = || OptimizerAdaptor::from(adam);
        let back = moments_from_state_dict(fresh(), &trm, &saved, &times, &dev).unwrap();
        assert_eq!(moments_to_state_dict(&back, &trm), (saved.clone(), times.clone()));

        // A checkpoint as the trainer wrote them before: burn's field paths, burn's layout.
        let (mut old, mut old_times) = (StateDict::default(), BTreeMap::new());
        let mut records = optim.to_record();
        let ranks: std::collections::HashMap<_, _> = param_infos(&trm).into_iter().map(|p| (p.id, p.shape.len())).collect();
        for (path, id) in crate::train::params::field_paths(&trm) {
            let (time, m, v) = unpack(records.remove(&id).unwrap(), ranks[&id]);
            let host = |d: TensorData| crate::train::checkpoint::host(d.shape.to_vec(), d.convert::<f32>().to_vec().unwrap());
            old.tensors.insert(format!("{path}.exp_avg"), host(m));
            old.tensors.insert(format!("{path}.exp_avg_sq"), host(v));
            old_times.insert(path, time);
        }
        assert!(old_times.contains_key("l_level.layers.0.mlp.down_proj.weight") && old_times.contains_key("h_init"));
        let back = moments_from_state_dict(fresh(), &trm, &old, &old_times, &dev).unwrap();
        assert_eq!(moments_to_state_dict(&back, &trm), (saved, times));
    }
}
