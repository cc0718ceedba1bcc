//! The recursion one ACT step at a time, on any backend: WebGPU on the page, Flex in the CPU
//! worker, through shared's one ACT loop ([`ActRun`]). Each step's answer is read back
//! asynchronously (WebGPU has no synchronous reads), so that its caller decides what happens
//! between steps.
//!
//! - The reference model runs exactly as `trm predict` runs it (fresh carry, the same inputs
//!   every step, puzzle id 0), on its own `side` x `side` frame.
//! - The size-general model runs as [`trm_shared::model::solve`] runs it, on the maze's own
//!   `rows` x `cols` grid, and stops after the step where its Q head says halt (`q_halt > 0`).

use std::borrow::Cow;
use std::future::Future;

use burn::prelude::*;
use trm_shared::model::{ActRun, GridShape, Halting};

use crate::analysis::StepTokens;

/// A model of either family, built on a backend.
pub use trm_shared::model::AnyModel;

/// One maze in flight through a model of either family: shared's [`ActRun`], read step by
/// step asynchronously.
pub struct ActSteps<B: Backend> {
    run: ActRun<'static, B>,
    stops_on_halt: bool,
}

/// How a run of ACT steps ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunEnd {
    /// ACT steps run.
    pub steps: usize,
    /// The step after which the size-general model halted (`q_halt > 0`) and stopped;
    /// `None` when it ran to the cap, and always for the reference model (which runs every step).
    pub halted_at: Option<usize>,
}

impl<B: Backend> ActSteps<B> {
    /// Starts `model` on the `rows` x `cols` maze `tokens` (row-major; checked against the
    /// model: the reference model takes only its own size, the size-general one any size),
    /// for at most `max_steps` ACT steps.
    pub fn new(model: AnyModel<B>, tokens: &[u8], rows: usize, cols: usize, max_steps: usize, device: &B::Device) -> Result<ActSteps<B>, String> {
        ActSteps::start(model, tokens, GridShape { rows, cols }, max_steps, false, device)
    }

    /// Starts `model` like [`ActSteps::new`] for exactly `steps` ACT steps: the size-general
    /// model does not stop where it halts, so that every backend does the same work (the
    /// page's benchmark).
    pub fn fixed(model: AnyModel<B>, tokens: &[u8], rows: usize, cols: usize, steps: usize, device: &B::Device) -> Result<ActSteps<B>, String> {
        ActSteps::start(model, tokens, GridShape { rows, cols }, steps, true, device)
    }

    fn start(model: AnyModel<B>, tokens: &[u8], grid: GridShape, steps: usize, fixed: bool, device: &B::Device) -> Result<ActSteps<B>, String> {
        if tokens.len() != grid.cells() {
            return Err(format!("{} tokens are no {}x{} maze", tokens.len(), grid.rows, grid.cols));
        }
        let stops_on_halt = model.is_local() && !fixed;
        let run = match model {
            // The reference model never stops early: `solving` runs it every step already.
            AnyModel::Local(m) if fixed => ActRun::local(Cow::Owned(m), tokens, grid, steps, Halting::Never, device),
            model => ActRun::solving(Cow::Owned(model), tokens, grid, steps, device),
        };
        Ok(ActSteps { run: run.map_err(|e| e.to_string())?, stops_on_halt })
    }

    /// Runs the remaining ACT steps and returns how long each took by `clock` (ms), answers
    /// read back included: WebGPU's work is done only once its answer is read.
    pub async fn time_each(&mut self, clock: impl Fn() -> f64) -> Result<Vec<f64>, String> {
        let mut times = Vec::new();
        loop {
            let start = clock();
            if self.next().await?.is_none() {
                return Ok(times);
            }
            times.push(clock() - start);
        }
    }

    /// Whether the run stops after the step where the model halts (the size-general model).
    pub fn stops_on_halt(&self) -> bool {
        self.stops_on_halt
    }

    /// Runs the next ACT step and reads its answer; `None` once the run is over.
    pub async fn next(&mut self) -> Result<Option<StepTokens>, String> {
        let step = self.run.next_async().await.map_err(|e| e.to_string())?;
        Ok(step.map(|s| StepTokens { step: s.step, tokens: s.answers, q_halt: s.q_halt.first().copied().unwrap_or(f32::NAN) }))
    }

    /// Runs the ACT steps, handing every answer to `on_step` as it arrives (its future runs
    /// before the next step: to post the answer, let the page draw it, or end the run with an
    /// error such as a cancel). The size-general model stops after the step where it halts;
    /// the reference model runs every step.
    pub async fn run<F, Fut>(&mut self, mut on_step: F) -> Result<RunEnd, String>
    where
        F: FnMut(StepTokens) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        while let Some(answer) = self.next().await? {
            on_step(answer).await?;
        }
        let halted_at = if self.stops_on_halt { self.run.halted_at().first().copied().flatten() } else { None };
        Ok(RunEnd { steps: self.run.steps_run(), halted_at })
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use burn::module::Param;
    use trm_shared::maze::Grid;
    use trm_shared::model::{Cpu, solve};

    use super::*;
    use crate::model_files::tests::{CONFIG, LOCAL_CONFIG, local_weights, weights};

    /// Polls a future that never waits (Flex's reads are ready at once) to its end.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1_000_000 {
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                return value;
            }
        }
        panic!("the future never finished");
    }

    fn local_model() -> AnyModel<Cpu> {
        let spec = crate::model_files::load(("config.toml", LOCAL_CONFIG), ("model.safetensors", &local_weights()), "t").unwrap();
        spec.build(&Default::default()).unwrap()
    }

    fn maze() -> Grid {
        Grid::parse_lines("S  #   \n## # # \n     # \n #### G\n").unwrap()
    }

    fn answers(model: AnyModel<Cpu>, maze: &Grid, max_steps: usize) -> (Vec<StepTokens>, RunEnd) {
        let mut run = ActSteps::new(model, &maze.tokens(), maze.rows(), maze.cols(), max_steps, &Default::default()).unwrap();
        let mut seen = Vec::new();
        let end = block_on(run.run(|a| {
            seen.push(a);
            async { Ok(()) }
        }))
        .unwrap();
        (seen, end)
    }

    #[test]
    fn the_size_general_model_runs_on_the_mazes_own_grid_as_solve_does() {
        let maze = maze();
        let model = local_model();
        let (seen, end) = answers(model.clone(), &maze, 5);
        // Fresh Q head weights are random here: compare with shared's solve, step by step.
        let AnyModel::Local(m) = model else { unreachable!() };
        let grid = GridShape { rows: 4, cols: 7 };
        let mut expected = Vec::new();
        let solved = solve(&m, &maze.tokens(), grid, 5, &Default::default(), |step, a, q| {
            expected.push(StepTokens { step, tokens: a.to_vec(), q_halt: q[0] });
            true
        })
        .unwrap();
        assert_eq!(seen.len(), expected.len());
        for (a, b) in seen.iter().zip(&expected) {
            assert_eq!((a.step, &a.tokens), (b.step, &b.tokens));
            assert!((a.q_halt - b.q_halt).abs() < 1e-5, "{} vs {}", a.q_halt, b.q_halt);
        }
        assert_eq!(end.halted_at, solved.halted_at[0]);
        assert_eq!(end.steps, solved.steps_run);
        assert!(seen.iter().all(|a| a.tokens.len() == 28));
    }

    #[test]
    fn the_size_general_model_stops_at_the_step_where_it_halts() {
        let AnyModel::Local(mut m) = local_model() else { unreachable!() };
        let device = Default::default();
        // A Q head that says "halt" everywhere, then one that never does.
        m.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![50.0f32], [1]), &device)));
        let (seen, end) = answers(AnyModel::Local(m.clone()), &maze(), 9);
        assert_eq!((seen.len(), end), (1, RunEnd { steps: 1, halted_at: Some(1) }));
        m.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![-50.0f32], [1]), &device)));
        let (seen, end) = answers(AnyModel::Local(m), &maze(), 9);
        assert_eq!((seen.len(), end), (9, RunEnd { steps: 9, halted_at: None }));
        // Any size: a 1x2 maze and a long thin one.
        for text in ["SG\n", "S                                 G\n"] {
            let g = Grid::parse_lines(text).unwrap();
            let (seen, _) = answers(local_model(), &g, 2);
            assert!(seen.iter().all(|a| a.tokens.len() == g.len()));
        }
    }

    #[test]
    fn a_fixed_run_ignores_halting_and_times_every_step() {
        let AnyModel::Local(mut m) = local_model() else { unreachable!() };
        let device = Default::default();
        // A Q head that says "halt" after every step: a fixed run still runs all of them.
        m.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![50.0f32], [1]), &device)));
        let maze = maze();
        let mut run = ActSteps::fixed(AnyModel::Local(m), &maze.tokens(), 4, 7, 4, &device).unwrap();
        assert!(!run.stops_on_halt());
        // A clock that moves 1 ms per reading, 2 readings per step.
        let tick = std::cell::Cell::new(0.0);
        let clock = || {
            tick.set(tick.get() + 1.0);
            tick.get()
        };
        assert_eq!(block_on(run.time_each(clock)).unwrap(), vec![1.0; 4]);
        // The reference model, fixed or not, runs every step; a wrong maze size is refused.
        let spec = crate::model_files::load(("config.toml", CONFIG), ("model.safetensors", &weights()), "t").unwrap();
        let reference = spec.build::<Cpu>(&device).unwrap();
        let mut run = ActSteps::fixed(reference.clone(), &[2; 25], 5, 5, 3, &device).unwrap();
        assert_eq!(block_on(run.time_each(|| 0.0)).unwrap().len(), 3);
        assert!(ActSteps::fixed(reference, &[2; 36], 6, 6, 3, &device).is_err());
        assert!(ActSteps::fixed(local_model(), &[2; 5], 2, 3, 3, &device).is_err());
    }

    #[test]
    fn the_reference_model_runs_every_step_on_its_own_size_only() {
        let spec = crate::model_files::load(("config.toml", CONFIG), ("model.safetensors", &weights()), "t").unwrap();
        let model = spec.build::<Cpu>(&Default::default()).unwrap();
        let maze = crate::editor::blank(5, 5).unwrap();
        let (seen, end) = answers(model.clone(), &maze, 3);
        assert_eq!((seen.len(), end), (3, RunEnd { steps: 3, halted_at: None }));
        assert!(ActSteps::new(model, &[2; 36], 6, 6, 3, &Default::default()).is_err());
    }

    #[test]
    fn an_error_from_the_caller_ends_the_run() {
        let mut run = ActSteps::new(local_model(), &maze().tokens(), 4, 7, 5, &Default::default()).unwrap();
        let e = block_on(run.run(|a| async move { if a.step == 2 { Err("cancelled".to_string()) } else { Ok(()) } }));
        assert_eq!(e.unwrap_err(), "cancelled");
        assert!(ActSteps::new(local_model(), &[2; 5], 2, 3, 5, &Default::default()).is_err());
    }
}
