//! Stable names for a model's parameters: the checkpoint's own.
//!
//! burn identifies parameters by [`ParamId`]s, which are random per model instance: a model
//! rebuilt from a checkpoint gets new ones. Optimizer and EMA state must survive a restart,
//! so they are keyed by each parameter's checkpoint name (`L_level.layers.0.mlp.down_proj.weight`,
//! as in `model.safetensors`), which depends only on the model's structure.

use burn::module::ParamId;
use burn::prelude::*;
use trm_shared::model::weights::Layout;
use trm_shared::model::NamedParams;

/// One float parameter of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Checkpoint name.
    pub name: String,
    /// The parameter's id in this model instance.
    pub id: ParamId,
    /// Its shape in burn's layout.
    pub shape: Vec<usize>,
    /// How checkpoints lay it out.
    pub layout: Layout,
}

/// Every float parameter of `model`, in a fixed order.
pub fn param_infos<B: Backend, M: NamedParams<B>>(model: &M) -> Vec<ParamInfo> {
    let info = |p: trm_shared::model::NamedParam<B>| ParamInfo { shape: p.shape(), name: p.name, id: p.id, layout: p.layout };
    model.named_params().into_iter().map(info).collect()
}

/// The name a reference-model parameter had in run checkpoints written before moments took
/// the checkpoint's names: burn's field path (`l_level.layers.0.mlp.down_proj.weight`), and
/// the values in burn's layout. Kept so that those runs still resume.
pub fn field_path(name: &str) -> String {
    match name {
        "embed_tokens.embedding_weight" => "embed_tokens".into(),
        "embed_pos.embedding_weight" => "embed_pos".into(),
        "puzzle_emb.weights" => "puzzle_emb".into(),
        "H_init" => "h_init".into(),
        "L_init" => "l_init".into(),
        _ => match name.strip_prefix("L_level.") {
            Some(rest) => format!("l_level.{rest}"),
            None => name.into(),
        },
    }
}

/// burn's field paths of a module's parameters, as the trainer named them before (to write
/// such old checkpoints in tests).
#[cfg(test)]
pub(crate) fn field_paths<B: Backend, M: burn::module::Module<B>>(module: &M) -> Vec<(String, ParamId)> {
    use burn::module::{ModuleVisitor, Param};
    struct FieldPaths {
        stack: Vec<String>,
        out: Vec<(String, ParamId)>,
    }
    impl<B: Backend> ModuleVisitor<B> for FieldPaths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.push((self.stack.join("."), param.id));
        }
    }
    let mut v = FieldPaths { stack: Vec::new(), out: Vec::new() };
    module.visit(&mut v);
    v.out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use burn::backend::Flex;
    use burn::module::{Module, Param};
    use trm_shared::model::{PosEncoding, RandomInit, Trm, TrmConfig};

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
    fn field_paths_follow_fields_and_indices() {
        let dev = Default::default();
        let inner = |bias: bool| Inner::<Flex> {
            weight: Param::from_tensor(Tensor::zeros([2, 3], &dev)),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([3], &dev))),
        };
        let m = Outer { layers: vec![inner(true), inner(false)], scale: Param::from_tensor(Tensor::ones([1], &dev)) };
        let paths = field_paths(&m);
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "scale"]);
        assert_eq!(paths[3].1, m.scale.id);
    }

    #[test]
    fn every_parameter_has_its_checkpoint_name_and_its_old_field_path() {
        let dev = Default::default();
        let attention = TrmConfig::tiny(4, 2);
        let mlp_t = TrmConfig { mlp_t: true, pos_encodings: PosEncoding::Learned, ..TrmConfig::tiny(4, 2) };
        for config in [attention, mlp_t] {
            let trm = Trm::<Flex>::build(&config, &mut RandomInit::new(1), &dev).unwrap();
            let infos = param_infos(&trm);
            let names: Vec<&str> = infos.iter().map(|p| p.name.as_str()).collect();
            let saved = trm.to_state_dict();
            assert_eq!(names.len(), saved.tensors.len());
            for info in &infos {
                assert_eq!(saved.shape(&info.name), Some(info.layout.stored_shape(&info.shape).as_slice()), "{}", info.name);
            }
            // The mapping from today's names to the old ones agrees with burn for every parameter.
            let mapped: HashMap<ParamId, String> = infos.iter().map(|p| (p.id, field_path(&p.name))).collect();
            let by_burn: HashMap<ParamId, String> = field_paths(&trm).into_iter().map(|(path, id)| (id, path)).collect();
            assert_eq!(mapped, by_burn);
        }
        assert_eq!(field_path("L_level.layers.1.self_attn.qkv_proj.weight"), "l_level.layers.1.self_attn.qkv_proj.weight");
        assert_eq!(field_path("q_head.bias"), "q_head.bias");
    }
}
