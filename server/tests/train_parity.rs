//! Training-step parity with the reference PyTorch code.
//!
//! `tests/fixtures/train/` was produced by running the reference's own modules (model,
//! `ACTLossHead`, SignSGD sparse-embedding optimizer, lr schedule, `EMAHelper`, with the
//! `adam-atan2` kernel re-expressed per element) through `pretrain.py`'s `train_batch` for three
//! consecutive optimizer steps from one reference-written checkpoint; the README there says
//! exactly how. Here our training path (the trainer's `Workers::step`, `apply_update` and
//! `Ema::update`) runs the same three steps from the same checkpoint on the same batches, and
//! every number the reference recorded must come out the same.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::Optimizer;
use burn::optim::record::AdaptorRecord;
use burn::prelude::*;
use trm_server::train::CpuTrain;
use trm_server::train::ema::Ema;
use trm_server::train::optim::{AdamAtan2, SignSgd};
use trm_server::train::params::param_infos;
use trm_server::train::schedule::LrSchedule;
use trm_server::train::step::Workers;
use trm_server::train::update::{apply_update, buffer_ids, freeze_buffers};
use trm_shared::model::act::{ActBatch, make_batch};
use trm_shared::model::checkpoint::canonical_name;
use trm_shared::model::{HostTensor, StateDict, Trm, TrmConfig};

type Inner = burn::backend::Flex;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train").join(name)
}

/// The reference's records: `batch{k}.*`, `step{k}.*` (k from 1) and `final.*`.
struct Reference(HashMap<String, HostTensor>);

impl Reference {
    fn load() -> Reference {
        let bytes = std::fs::read(fixture("train_reference.safetensors")).unwrap();
        Reference(StateDict::from_safetensors_bytes(&bytes, "train_reference").unwrap().tensors.into_iter().collect())
    }
    fn get(&self, name: &str) -> &HostTensor {
        self.0.get(name).unwrap_or_else(|| panic!("the reference recorded no {name}"))
    }
    fn scalar(&self, name: &str) -> f64 {
        self.get(name).values[0] as f64
    }
    fn ints(&self, name: &str) -> Vec<i32> {
        self.get(name).values.iter().map(|v| *v as i32).collect()
    }
    /// Tensors recorded under `prefix` + a reference parameter name, by canonical name.
    fn params(&self, prefix: &str) -> HashMap<String, &HostTensor> {
        self.0
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (canonical_name(n).to_string(), v)))
            .collect()
    }
}

struct Hyper(serde_json::Value);

impl Hyper {
    fn load() -> Hyper {
        Hyper(serde_json::from_str(&std::fs::read_to_string(fixture("train_hyper.json")).unwrap()).unwrap())
    }
    fn f(&self, k: &str) -> f64 {
        self.0[k].as_f64().unwrap_or_else(|| panic!("train_hyper.json lacks {k}"))
    }
    fn u(&self, k: &str) -> u64 {
        self.0[k].as_u64().unwrap_or_else(|| panic!("train_hyper.json lacks {k}"))
    }
}

fn batch(r: &Reference, k: usize, trm: &Trm<CpuTrain>) -> ActBatch<CpuTrain> {
    let dev = Default::default();
    let inputs = r.ints(&format!("batch{k}.inputs"));
    let labels = r.ints(&format!("batch{k}.labels"));
    let ids = r.ints(&format!("batch{k}.puzzle_identifiers"));
    let mut b = make_batch::<CpuTrain>(trm.sizes(), &inputs, &ids, &dev).unwrap();
    b.labels = Some(Tensor::from_data(TensorData::new(labels, r.get(&format!("batch{k}.labels")).shape.clone()), &dev));
    b
}

/// How far `ours` is from the reference over the tensors named in `want`, which must all exist
/// in `ours` with the same shapes.
struct Diff {
    /// Largest |ours − reference|.
    abs: f32,
    /// Largest |ours − reference| / max |reference| of the same tensor.
    scaled: f32,
    /// Where the largest scaled difference is.
    at: String,
    /// Values compared.
    n: usize,
}

fn diff(ours: &StateDict, want: &HashMap<String, &HostTensor>) -> Diff {
    assert!(!want.is_empty());
    let mut d = Diff { abs: 0.0, scaled: 0.0, at: String::new(), n: 0 };
    for (name, w) in want {
        let o = ours.tensors.get(name).unwrap_or_else(|| panic!("our model has no {name}"));
        assert_eq!(o.shape, w.shape, "{name}");
        let scale = w.values.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
        for (a, b) in o.values.iter().zip(&w.values) {
            let e = (a - b).abs();
            assert!(e.is_finite(), "{name}: {a} vs {b}");
            d.abs = d.abs.max(e);
            if e / scale > d.scaled {
                d.scaled = e / scale;
                d.at = name.clone();
            }
        }
        d.n += w.values.len();
    }
    d
}

/// The model with each AdamATan2-trained parameter's value replaced by its first (`second`
/// false) or second moment, so that `to_state_dict` names and lays them out as the reference.
struct Moments {
    records: HashMap<ParamId, AdaptorRecord<AdamAtan2, CpuTrain>>,
    second: bool,
    times: Vec<usize>,
}

impl ModuleMapper<Inner> for Moments {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Inner, D>>) -> Param<Tensor<Inner, D>> {
        let Some(rec) = self.records.remove(&param.id) else { return param };
        let state = rec.into_state::<D>();
        self.times.push(state.time);
        let (id, _, mapper) = param.consume();
        Param::from_mapped_value(id, if self.second { state.exp_avg_sq } else { state.exp_avg }, mapper)
    }
}

fn moments(optim: &OptimizerAdaptor<AdamAtan2, Trm<CpuTrain>, CpuTrain>, trm: &Trm<Inner>, second: bool) -> (StateDict, Vec<usize>) {
    let mut m = Moments { records: optim.to_record().into_iter().collect(), second, times: Vec::new() };
    let sd = trm.clone().map(&mut m).to_state_dict();
    (sd, m.times)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn three_training_steps_match_the_reference() {
    let r = Reference::load();
    let hp = Hyper::load();
    let dev = Default::default();
    let mut cfg = TrmConfig::from_file(&fixture("train_all_config.yaml")).unwrap();
    cfg.seq_len = Some(r.get("batch0.inputs").shape[1]);
    let mut trm = freeze_buffers(Trm::<CpuTrain>::load(&cfg, &fixture("train_step_0"), &dev).unwrap());
    assert_eq!(trm.config().halt_exploration_prob, 0.0, "exploration must be off for a deterministic comparison");

    let gbs = hp.u("global_batch_size") as usize;
    let schedule = LrSchedule { base: hp.f("lr"), warmup_steps: hp.u("lr_warmup_steps"), total_steps: hp.u("total_steps"), min_ratio: hp.f("lr_min_ratio") };
    let pe_schedule = LrSchedule { base: hp.f("puzzle_emb_lr"), ..schedule };
    let mut optim: OptimizerAdaptor<AdamAtan2, Trm<CpuTrain>, CpuTrain> =
        OptimizerAdaptor::from(AdamAtan2 { beta1: hp.f("beta1"), beta2: hp.f("beta2"), weight_decay: hp.f("weight_decay") });
    let sign = SignSgd { weight_decay: hp.f("puzzle_emb_weight_decay") };
    let mut ema = {
        let live = trm.valid();
        Ema::new(&live, &buffer_ids(&live), hp.f("ema_rate"))
    };
    let mut workers = Workers::<CpuTrain>::new(vec![dev]);
    let params = param_infos(&trm);

    let steps = hp.u("steps");
    let mut report = Vec::new();
    for step in 1..=steps {
        let p = format!("step{step}.");
        let b = batch(&r, step as usize - 1, &trm);
        let out = workers.step(&trm, gbs, &[0], &params, |_, _| Ok(b.clone())).unwrap();

        // The carry: halted rows took the new batch's rows, the others kept theirs.
        let ids: Vec<i32> = out.puzzle_ids.iter().map(|&i| i as i32).collect();
        assert_eq!(ids, r.ints(&format!("{p}current_puzzle_identifiers")), "step {step}: rows' puzzles");

        // Loss as backpropagated (/ global batch) and the metric sums.
        let m = out.metrics;
        let loss = (m.lm_loss + 0.5 * m.q_halt_loss) / gbs as f64;
        let ref_loss = r.scalar(&format!("{p}loss"));
        assert!(rel(loss, ref_loss) < 1e-5, "step {step}: loss {loss} vs {ref_loss}");
        assert!(rel(m.lm_loss, r.scalar(&format!("{p}metric.lm_loss"))) < 1e-5, "step {step}: lm_loss {}", m.lm_loss);
        assert!(rel(m.q_halt_loss, r.scalar(&format!("{p}metric.q_halt_loss"))) < 1e-5, "step {step}: q_halt_loss {}", m.q_halt_loss);
        for (name, ours) in [("count", m.count), ("exact_accuracy", m.exact_accuracy), ("q_halt_accuracy", m.q_halt_accuracy), ("steps", m.steps)] {
            assert_eq!(ours, r.scalar(&format!("{p}metric.{name}")), "step {step}: {name}");
        }
        assert!((m.accuracy - r.scalar(&format!("{p}metric.accuracy"))).abs() < 1e-6, "step {step}: accuracy {}", m.accuracy);

        let (lr, lr_pe) = (schedule.lr(step), pe_schedule.lr(step));
        assert!(rel(lr, r.scalar(&format!("{p}lr"))) < 1e-6, "step {step}: lr {lr}");
        assert!(rel(lr_pe, r.scalar(&format!("{p}puzzle_emb_lr"))) < 1e-6, "step {step}: puzzle_emb lr {lr_pe}");

        trm = apply_update(trm, &mut optim, &sign, out.grads, &out.puzzle_ids, lr, lr_pe);
        ema.update(&trm.valid());

        let ours = trm.valid().to_state_dict();
        let w = diff(&ours, &r.params(&format!("{p}param.")));
        let pe = diff(&ours, &HashMap::from([("puzzle_emb.weights".to_string(), r.get(&format!("{p}puzzle_emb")))]));
        report.push(format!(
            "step {step}: loss {loss:.7} (ref {ref_loss:.7}), {} weights: max |Δw| {:.2e} (scaled {:.2e} at {}), max |Δpuzzle_emb| {:.2e}",
            w.n, w.abs, w.scaled, w.at, pe.abs
        ));
        // f32 rounding of values below 1 is ~6e-8 per operation; the atan2 update is bounded,
        // so gradient rounding moves a weight by far less than this unless a gradient's sign flips.
        assert!(w.abs <= 1e-6, "step {step}: weights differ by {} (at {})", w.abs, w.at);
        // SignSGD: ±lr steps and a decay; only a flipped sign could differ.
        assert!(pe.abs <= 1e-6, "step {step}: puzzle embedding differs by {}", pe.abs);
    }

    // After the last step: both moments, the step counts and the EMA shadow.
    let live = trm.valid();
    let (m1, times) = moments(&optim, &live, false);
    let (m2, _) = moments(&optim, &live, true);
    assert!(!times.is_empty() && times.iter().all(|&t| t as u64 == steps), "{times:?}");
    for name in r.params("final.adam_step.").keys() {
        assert_eq!(r.scalar(&format!("final.adam_step.model.inner.{name}")) as u64, steps, "{name}");
    }
    let m1 = diff(&m1, &r.params("final.exp_avg."));
    let m2 = diff(&m2, &r.params("final.exp_avg_sq."));
    let e = diff(&ema.apply(live).to_state_dict(), &r.params("final.ema."));
    for (what, d) in [("exp_avg", &m1), ("exp_avg_sq", &m2), ("ema", &e)] {
        report.push(format!("final {what}: {} values, max |Δ| {:.2e}, scaled {:.2e} at {}", d.n, d.abs, d.scaled, d.at));
    }
    eprintln!("{}", report.join("\n"));
    // The moments carry the gradients themselves: f32 backward passes in another order agree
    // to a few units of the last place relative to each tensor's size.
    assert!(m1.scaled <= 1e-5, "first moment differs by {} of its scale at {}", m1.scaled, m1.at);
    assert!(m2.scaled <= 1e-5, "second moment differs by {} of its scale at {}", m2.scaled, m2.at);
    assert!(e.abs <= 1e-6, "EMA differs by {} at {}", e.abs, e.at);
}
