//! Exponential moving average of the trainable weights (the reference's `models/ema.py`).
//!
//! After every optimizer step `shadow = (1 − rate)·p + rate·shadow`, starting from the
//! weights at registration. Only trainable parameters are averaged: the reference's buffers
//! (the puzzle embedding trained by SignSGD, `H_init`, `L_init`) are not, so they are passed
//! in `skip` and the EMA model takes their current values. Evaluation and saved checkpoints
//! use [`Ema::apply`]'s copy, as the reference's `ema_copy`.

use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use trm_shared::model::NamedParams;

/// The shadow weights, one flattened tensor per tracked parameter. Keep it on a plain
/// backend (a model's `valid()`): on an autodiff backend every update would chain a graph node
/// to the previous one, and each step would take longer than the last.
#[derive(Debug, Clone)]
pub struct Ema<B: Backend> {
    /// Weight of the old shadow in each update (0.999 in the reference).
    pub rate: f64,
    shadow: HashMap<ParamId, Tensor<B, 1>>,
}

fn flatten<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 1> {
    let n: usize = t.dims().iter().product();
    t.reshape([n])
}

struct Register<'a, B: Backend> {
    skip: &'a HashSet<ParamId>,
    shadow: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Register<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.skip.contains(&param.id) {
            self.shadow.insert(param.id, flatten(param.val().detach()));
        }
    }
}

struct Update<'a, B: Backend> {
    rate: f64,
    shadow: &'a mut HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Update<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(s) = self.shadow.remove(&param.id) {
            let p = flatten(param.val().detach());
            let next = p.mul_scalar(1.0 - self.rate) + s.mul_scalar(self.rate);
            self.shadow.insert(param.id, next);
        }
    }
}

struct Apply<'a, B: Backend> {
    shadow: &'a HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleMapper<B> for Apply<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match self.shadow.get(&param.id) {
            Some(s) => {
                let (id, value, mapper) = param.consume();
                let dims: [usize; D] = value.dims();
                Param::from_mapped_value(id, s.clone().reshape(dims), mapper)
            }
            None => param,
        }
    }
}

/// A saved shadow that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EMA state does not fit the model: parameter {0} is missing or has another size")]
pub struct EmaMismatch(pub String);

impl<B: Backend> Ema<B> {
    /// Starts averaging `model`'s parameters, except those in `skip`, from their values now.
    pub fn new<M: Module<B>>(model: &M, skip: &HashSet<ParamId>, rate: f64) -> Ema<B> {
        let mut r = Register { skip, shadow: HashMap::new() };
        model.visit(&mut r);
        Ema { rate, shadow: r.shadow }
    }

    /// Resumes: the tracked parameters of `live` (all but `skip`) take their shadow values
    /// from `averaged`, a model of the same structure holding the saved EMA weights, matched
    /// by checkpoint name.
    pub fn resume<M: Module<B> + NamedParams<B>>(live: &M, averaged: &M, skip: &HashSet<ParamId>, rate: f64) -> Result<Ema<B>, EmaMismatch> {
        let mut saved: HashMap<String, Tensor<B, 1>> = averaged.named_params().into_iter().map(|p| (p.name.clone(), p.flat())).collect();
        let mut shadow = HashMap::new();
        for p in live.named_params() {
            if skip.contains(&p.id) {
                continue;
            }
            let n: usize = p.shape().iter().product();
            match saved.remove(&p.name) {
                Some(t) if t.dims()[0] == n => {
                    shadow.insert(p.id, t);
                }
                _ => return Err(EmaMismatch(p.name)),
            }
        }
        Ok(Ema { rate, shadow })
    }

    /// One update after an optimizer step.
    pub fn update<M: Module<B>>(&mut self, model: &M) {
        model.visit(&mut Update { rate: self.rate, shadow: &mut self.shadow });
    }

    /// `model` with every tracked parameter replaced by its average (the eval model).
    pub fn apply<M: Module<B>>(&self, model: M) -> M {
        model.map(&mut Apply { shadow: &self.shadow })
    }

    /// How many parameters are averaged.
    pub fn tracked(&self) -> usize {
        self.shadow.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        a: Param<Tensor<B, 2>>,
        buffer: Param<Tensor<B, 1>>,
    }

    impl<B: Backend> NamedParams<B> for Two<B> {
        fn named_params(&self) -> Vec<trm_shared::model::NamedParam<B>> {
            trm_shared::model::weights::Export::collect(|mut out| {
                out.matrix("a", &self.a);
                out.vector("buffer", &self.buffer);
            })
        }
    }

    fn vals<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().iter::<f64>().collect()
    }

    fn model(a: [[f32; 2]; 1], buf: [f32; 2]) -> Two<B> {
        let dev = Default::default();
        Two { a: Param::from_tensor(Tensor::from_floats(a, &dev)), buffer: Param::from_tensor(Tensor::from_floats(buf, &dev)) }
    }

    /// Replaces the values but keeps the ids, as an optimizer step does.
    fn set(m: Two<B>, a: [[f32; 2]; 1], buf: [f32; 2]) -> Two<B> {
        let dev = Default::default();
        Two {
            a: m.a.map(|_| Tensor::from_floats(a, &dev)),
            buffer: m.buffer.map(|_| Tensor::from_floats(buf, &dev)),
        }
    }

    #[test]
    fn averages_trainable_weights_by_hand_and_skips_buffers() {
        let m = model([[1.0, 2.0]], [5.0, 5.0]);
        let skip = HashSet::from([m.buffer.id]);
        let mut ema = Ema::new(&m, &skip, 0.9);
        assert_eq!(ema.tracked(), 1);
        let m = set(m, [[3.0, 0.0]], [7.0, 7.0]);
        ema.update(&m);
        // 0.1·3 + 0.9·1 = 1.2; 0.1·0 + 0.9·2 = 1.8.
        let m = set(m, [[-1.0, 4.0]], [9.0, 9.0]);
        ema.update(&m);
        // 0.1·(−1) + 0.9·1.2 = 0.98; 0.1·4 + 0.9·1.8 = 2.02.
        let e = ema.apply(m);
        let a = vals(e.a.val());
        assert!((a[0] - 0.98).abs() < 1e-6 && (a[1] - 2.02).abs() < 1e-6, "{a:?}");
        assert_eq!(e.a.val().dims(), [1, 2]);
        // The buffer is the live value, not an average.
        assert_eq!(vals(e.buffer.val()), vec![9.0, 9.0]);
    }

    #[test]
    fn resume_matches_by_name_across_new_ids() {
        let live = model([[1.0, 2.0]], [0.0, 0.0]);
        let saved = model([[0.5, 0.25]], [3.0, 3.0]);
        assert_ne!(live.a.id, saved.a.id);
        let skip = HashSet::from([live.buffer.id]);
        let mut ema = Ema::resume(&live, &saved, &skip, 0.5).unwrap();
        ema.update(&live);
        // 0.5·1 + 0.5·0.5 = 0.75; 0.5·2 + 0.5·0.25 = 1.125.
        assert_eq!(vals(ema.apply(live).a.val()), vec![0.75, 1.125]);
    }
}
