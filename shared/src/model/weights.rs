//! The checkpoint's tensor names, each written once: every module takes its weights from,
//! and exports them to, the names under its own path, as candle's `vb.pp("mlp")` does.
//!
//! The names are the reference PyTorch model's state-dict names without its `model.inner.`
//! prefix, e.g. `L_level.layers.0.mlp.down_proj.weight`. A module is built from a
//! [`Weights`] (random initialisation or a checkpoint, through [`WeightSource`]) and exports
//! to an [`Export`]; the trainer keys optimizer moments and the EMA by the same names
//! ([`NamedParams`]).
//!
//! ```text
//! impl SwiGlu {
//!     fn take(mut w: Weights<B>, ..)  { gate_up_proj: CastedLinear::take(w.pp("gate_up_proj"), ..)?, .. }
//!     fn export(&self, mut out: Export<B>) { self.gate_up_proj.export(out.pp("gate_up_proj")); .. }
//! }
//! ```

use std::fmt::Display;

use burn::module::{Param, ParamId};
use burn::prelude::*;

use super::ModelError;
use super::checkpoint::{HostTensor, StateDict};

/// How a freshly built parameter gets its values, in the reference's layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// JAX-style truncated normal (±2σ) with this standard deviation.
    TruncNormal(f64),
    /// All zeros.
    Zeros,
    /// Every value this constant.
    Constant(f32),
}

impl Init {
    /// The reference's LeCun normal: truncated normal of std `1/√fan_in`.
    pub fn lecun(fan_in: usize) -> Init {
        Init::TruncNormal(1.0 / (fan_in as f64).sqrt())
    }
}

/// Supplies the values of each named tensor, in the reference's layout and names. Random
/// initialisation ([`super::RandomInit`]) and checkpoint loading both implement it, so that
/// one `take` per module lists its tensors for both.
pub trait WeightSource {
    /// Values of `name`, which must have `shape`; `init` says how the reference initialises it.
    fn take(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError>;
}

/// `path.leaf`, or `leaf` at the root.
fn join(path: &str, leaf: impl Display) -> String {
    if path.is_empty() { leaf.to_string() } else { format!("{path}.{leaf}") }
}

/// The weights below one module's path, to build it from.
pub struct Weights<'a, B: Backend> {
    src: &'a mut dyn WeightSource,
    path: String,
    device: &'a B::Device,
}

impl<'a, B: Backend> Weights<'a, B> {
    /// The whole model's weights from `src`, placed on `device`.
    pub fn new(src: &'a mut dyn WeightSource, device: &'a B::Device) -> Weights<'a, B> {
        Weights { src, path: String::new(), device }
    }

    /// The weights of the submodule `part` (a field name or a layer index).
    pub fn pp(&mut self, part: impl Display) -> Weights<'_, B> {
        Weights { src: &mut *self.src, path: join(&self.path, part), device: self.device }
    }

    /// The device the parameters go to.
    pub fn device(&self) -> &B::Device {
        self.device
    }

    fn values(&mut self, leaf: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError> {
        self.src.take(&join(&self.path, leaf), shape, init)
    }

    /// A `[len]` vector.
    pub fn vector(&mut self, leaf: &str, len: usize, init: Init) -> Result<Param<Tensor<B, 1>>, ModelError> {
        let values = self.values(leaf, &[len], init)?;
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(values, [len]), self.device)))
    }

    /// A `[rows, cols]` matrix, held as stored.
    pub fn matrix(&mut self, leaf: &str, [rows, cols]: [usize; 2], init: Init) -> Result<Param<Tensor<B, 2>>, ModelError> {
        let values = self.values(leaf, &[rows, cols], init)?;
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(values, [rows, cols]), self.device)))
    }

    /// A matrix stored `[rows, cols]` and held as its transpose `[cols, rows]` (linear weights:
    /// `[out, in]` in checkpoints, `[in, out]` in burn).
    pub fn transposed(&mut self, leaf: &str, [rows, cols]: [usize; 2], init: Init) -> Result<Param<Tensor<B, 2>>, ModelError> {
        let values = self.values(leaf, &[rows, cols], init)?;
        Ok(Param::from_tensor(Tensor::<B, 2>::from_data(TensorData::new(values, [rows, cols]), self.device).transpose()))
    }
}

/// How a parameter's values lie in checkpoints compared with burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The same shape and order.
    Same,
    /// The transpose of a matrix (linear weights).
    Transposed,
}

impl Layout {
    /// The checkpoint's shape of a tensor of burn shape `shape`.
    pub fn stored_shape(self, shape: &[usize]) -> Vec<usize> {
        match (self, shape) {
            (Layout::Transposed, &[rows, cols]) => vec![cols, rows],
            _ => shape.to_vec(),
        }
    }

    /// Values in burn's layout as a checkpoint tensor (f32).
    pub fn to_stored(self, data: TensorData) -> HostTensor {
        let shape = data.shape.to_vec();
        let values: Vec<f32> = data.convert::<f32>().iter::<f32>().collect();
        let values = match (self, shape.as_slice()) {
            (Layout::Transposed, &[rows, cols]) => transpose(&values, rows, cols),
            _ => values,
        };
        HostTensor { shape: self.stored_shape(&shape), values, stored_dtype: "F32".into() }
    }

    /// A checkpoint tensor's values in burn's layout.
    pub fn from_stored(self, t: &HostTensor) -> TensorData {
        match (self, t.shape.as_slice()) {
            (Layout::Transposed, &[rows, cols]) => TensorData::new(transpose(&t.values, rows, cols), [cols, rows]),
            _ => TensorData::new(t.values.clone(), t.shape.clone()),
        }
    }
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = values[i * cols + j];
        }
    }
    out
}

/// A parameter's value; the models have vectors and matrices only.
#[derive(Debug, Clone)]
pub enum ParamValue<B: Backend> {
    /// Rank 1.
    Vector(Tensor<B, 1>),
    /// Rank 2.
    Matrix(Tensor<B, 2>),
}

/// One parameter under its checkpoint name.
#[derive(Debug, Clone)]
pub struct NamedParam<B: Backend> {
    /// The checkpoint name, e.g. `L_level.layers.0.mlp.down_proj.weight`.
    pub name: String,
    /// burn's id of the parameter in this model instance.
    pub id: ParamId,
    /// Its value, in burn's layout.
    pub value: ParamValue<B>,
    /// How checkpoints lay it out.
    pub layout: Layout,
}

impl<B: Backend> NamedParam<B> {
    /// The shape in burn's layout.
    pub fn shape(&self) -> Vec<usize> {
        match &self.value {
            ParamValue::Vector(t) => t.dims().to_vec(),
            ParamValue::Matrix(t) => t.dims().to_vec(),
        }
    }

    /// The values, flattened in burn's layout, without gradient.
    pub fn flat(&self) -> Tensor<B, 1> {
        match &self.value {
            ParamValue::Vector(t) => t.clone().detach(),
            ParamValue::Matrix(t) => t.clone().detach().flatten(0, 1),
        }
    }

    /// The tensor as a checkpoint holds it.
    pub fn to_host(&self) -> HostTensor {
        let data = match &self.value {
            ParamValue::Vector(t) => t.clone().into_data(),
            ParamValue::Matrix(t) => t.clone().into_data(),
        };
        self.layout.to_stored(data)
    }
}

/// Collects a module's parameters under the names below its path.
pub struct Export<'a, B: Backend> {
    out: &'a mut Vec<NamedParam<B>>,
    path: String,
}

impl<B: Backend> Export<'_, B> {
    /// Every parameter that `export` hands to the root [`Export`] it is given.
    pub fn collect(export: impl FnOnce(Export<'_, B>)) -> Vec<NamedParam<B>> {
        let mut out = Vec::new();
        export(Export { out: &mut out, path: String::new() });
        out
    }

    /// The names of the submodule `part`.
    pub fn pp(&mut self, part: impl Display) -> Export<'_, B> {
        Export { out: &mut *self.out, path: join(&self.path, part) }
    }

    fn push(&mut self, leaf: &str, id: ParamId, value: ParamValue<B>, layout: Layout) {
        self.out.push(NamedParam { name: join(&self.path, leaf), id, value, layout });
    }

    /// A vector, as [`Weights::vector`] takes it.
    pub fn vector(&mut self, leaf: &str, p: &Param<Tensor<B, 1>>) {
        self.push(leaf, p.id, ParamValue::Vector(p.val()), Layout::Same);
    }

    /// A matrix, as [`Weights::matrix`] takes it.
    pub fn matrix(&mut self, leaf: &str, p: &Param<Tensor<B, 2>>) {
        self.push(leaf, p.id, ParamValue::Matrix(p.val()), Layout::Same);
    }

    /// A matrix stored transposed, as [`Weights::transposed`] takes it.
    pub fn transposed(&mut self, leaf: &str, p: &Param<Tensor<B, 2>>) {
        self.push(leaf, p.id, ParamValue::Matrix(p.val()), Layout::Transposed);
    }
}

/// A model whose every parameter has a checkpoint name.
pub trait NamedParams<B: Backend> {
    /// Every parameter under its checkpoint name, in a fixed order.
    fn named_params(&self) -> Vec<NamedParam<B>>;
}

impl StateDict {
    /// The tensors of `params`, by name, in the checkpoint's layouts.
    pub fn from_params<B: Backend>(params: &[NamedParam<B>]) -> StateDict {
        StateDict { tensors: params.iter().map(|p| (p.name.clone(), p.to_host())).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cpu, LocalConfig, LocalTrm, PosEncoding, RandomInit, Trm, TrmConfig};

    /// Random weights that remember every tensor handed out, by name, in order.
    struct Recording {
        random: RandomInit,
        taken: Vec<(String, HostTensor)>,
    }

    impl WeightSource for Recording {
        fn take(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError> {
            let values = self.random.take(name, shape, init)?;
            let host = HostTensor { shape: shape.to_vec(), values: values.clone(), stored_dtype: "F32".into() };
            self.taken.push((name.to_string(), host));
            Ok(values)
        }
    }

    /// A model built from a [`Recording`] exports exactly the names, shapes and values it took.
    fn assert_round_trip<M: NamedParams<Cpu>>(build: impl FnOnce(&mut dyn WeightSource) -> M) {
        let mut src = Recording { random: RandomInit::new(7), taken: Vec::new() };
        let params = build(&mut src).named_params();
        let exported: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let taken: Vec<&str> = src.taken.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(exported, taken);
        let taken = StateDict { tensors: src.taken.into_iter().collect() };
        assert_eq!(StateDict::from_params(&params), taken);
    }

    #[test]
    fn the_attention_model_exports_the_names_it_loads() {
        let config = TrmConfig::tiny(4, 2);
        assert_round_trip(|src| Trm::<Cpu>::build(&config, src, &Default::default()).unwrap());
    }

    #[test]
    fn the_mlp_t_model_exports_the_names_it_loads() {
        let config = TrmConfig { mlp_t: true, pos_encodings: PosEncoding::Learned, l_layers: 2, ..TrmConfig::tiny(9, 3) };
        assert_round_trip(|src| Trm::<Cpu>::build(&config, src, &Default::default()).unwrap());
    }

    #[test]
    fn the_local_model_exports_the_names_it_loads() {
        let config = LocalConfig { hidden_size: 8, expansion: 2.0, l_layers: 2, ..LocalConfig::default() };
        assert_round_trip(|src| LocalTrm::<Cpu>::build(&config, src, &Default::default()).unwrap());
    }

    #[test]
    fn paths_join_parts_and_layouts_round_trip() {
        assert_eq!(join("", "L_level"), "L_level");
        assert_eq!(join("L_level.layers", 3), "L_level.layers.3");
        let t = HostTensor { shape: vec![2, 3], values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], stored_dtype: "F32".into() };
        let held = Layout::Transposed.from_stored(&t);
        assert_eq!(held.shape.to_vec(), vec![3, 2]);
        assert_eq!(held.to_vec::<f32>().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(Layout::Transposed.to_stored(held), t);
        assert_eq!(Layout::Same.to_stored(Layout::Same.from_stored(&t)), t);
    }

    #[test]
    fn weights_and_export_use_the_same_names_and_layouts() {
        let device = Default::default();
        let mut src = RandomInit::new(1);
        let mut w = Weights::<Cpu>::new(&mut src, &device);
        let mut block = w.pp("block");
        let v = block.vector("v", 3, Init::Constant(2.0)).unwrap();
        let t = block.pp(0).transposed("weight", [2, 3], Init::lecun(3)).unwrap();
        assert_eq!(t.val().dims(), [3, 2]);
        let params = Export::collect(|mut out| {
            let mut block = out.pp("block");
            block.vector("v", &v);
            block.pp(0).transposed("weight", &t);
        });
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["block.v", "block.0.weight"]);
        assert_eq!((params[1].id, params[1].shape(), params[1].to_host().shape), (t.id, vec![3, 2], vec![2, 3]));
    }
}
