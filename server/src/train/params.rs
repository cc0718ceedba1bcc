//! Stable names for a module's parameters.
//!
//! burn identifies parameters by [`ParamId`]s, which are random per model instance: a model
//! rebuilt from a checkpoint gets new ones. Optimizer and EMA state must survive a restart,
//! so they are saved under each parameter's field path (`l_level.layers.0.mlp.down_proj.weight`),
//! which depends only on the model's structure.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// One float parameter of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Field path, dot-separated (`Vec` elements by index).
    pub path: String,
    /// The parameter's id in this module instance.
    pub id: ParamId,
    /// Its shape.
    pub shape: Vec<usize>,
}

struct Collector {
    stack: Vec<String>,
    out: Vec<ParamInfo>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(ParamInfo { path: self.stack.join("."), id: param.id, shape: param.val().dims().to_vec() });
    }
}

/// Every float parameter of `module`, in visiting order (which the structure fixes).
pub fn param_infos<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamInfo> {
    let mut c = Collector { stack: Vec::new(), out: Vec::new() };
    module.visit(&mut c);
    c.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[derive(Module, Debug)]
    struct Inner<B: Backend> {
        weight: Param<Tensor<B, 2>>,
        bias: Option<Param<Tensor<B, 1>>>,
    }

    #[derive(Module, Debug)]
    struct Outer<B: Backend> {
        layers: Vec<Inner<B>>,
        scale: Param<Tensor<B, 1>>,
    }

    #[test]
    fn paths_follow_fields_and_indices() {
        let dev = Default::default();
        let inner = |bias: bool| Inner::<Flex> {
            weight: Param::from_tensor(Tensor::zeros([2, 3], &dev)),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([3], &dev))),
        };
        let m = Outer { layers: vec![inner(true), inner(false)], scale: Param::from_tensor(Tensor::ones([1], &dev)) };
        let infos = param_infos(&m);
        let paths: Vec<&str> = infos.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "scale"]);
        assert_eq!(infos[0].shape, vec![2, 3]);
        assert_eq!(infos[3].id, m.scale.id);
    }
}
