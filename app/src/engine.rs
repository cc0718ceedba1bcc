//! Where a maze gets solved: on WebGPU through burn's wgpu backend, on the CPU through
//! burn's Flex compiled to WASM, or by the server (`POST /api/predict`).
//!
//! Local runs go one ACT step at a time, read the answer back asynchronously (WebGPU has
//! no synchronous reads), hand it to the page, and yield to the event loop before the next
//! step, so the page stays responsive and a cancel takes effect between steps.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::backend::Flex;
use burn::backend::wgpu::{Wgpu, WgpuDevice, graphics::WebGpu, init_setup_async};
use burn::prelude::*;
use trm_shared::api::{MazeInput, PredictRequest, PredictResponse};
use trm_shared::maze::Grid;
use trm_shared::model::Trm;
use trm_shared::model::act::make_batch;

use crate::analysis::StepAnswer;
use crate::model_files::ModelSpec;
use crate::web;

/// Where to solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// burn's wgpu backend on the browser's WebGPU.
    WebGpu,
    /// burn's Flex CPU backend, in this page's WASM (one thread).
    Cpu,
    /// The server's model (`POST /api/predict`).
    Server,
}

impl Choice {
    /// All choices, in the order the page lists them.
    pub const ALL: [Choice; 3] = [Choice::WebGpu, Choice::Cpu, Choice::Server];

    /// Label in the page.
    pub fn label(self) -> &'static str {
        match self {
            Choice::WebGpu => "WebGPU (in the browser)",
            Choice::Cpu => "CPU (in the browser)",
            Choice::Server => "Server",
        }
    }

    /// Short id used in the page's data attributes and tests.
    pub fn id(self) -> &'static str {
        match self {
            Choice::WebGpu => "webgpu",
            Choice::Cpu => "cpu",
            Choice::Server => "server",
        }
    }
}

/// A finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The backend that actually ran, in words (adapter, model name ...).
    pub backend: String,
    /// Wall time of the run, model upload excluded, in ms.
    pub elapsed_ms: f64,
    /// ACT steps that ran.
    pub steps: usize,
}

/// The models built so far, per backend, for the current spec.
#[derive(Default)]
pub struct Engine {
    spec: Option<Rc<ModelSpec>>,
    gpu: Option<(WgpuDevice, String)>,
    gpu_model: Option<Trm<Wgpu>>,
    cpu_model: Option<Trm<Flex>>,
    /// Set by the page to stop the run in progress after its current step.
    pub cancel: Rc<Cell<bool>>,
}

/// The engine shared by the page's handlers (the page is single-threaded).
pub type SharedEngine = Rc<RefCell<Engine>>;

impl Engine {
    /// Switches to another model; models built for the old one are dropped.
    pub fn set_spec(&mut self, spec: Rc<ModelSpec>) {
        self.spec = Some(spec);
        self.gpu_model = None;
        self.cpu_model = None;
    }

    /// The current model, if one is loaded.
    pub fn spec(&self) -> Option<Rc<ModelSpec>> {
        self.spec.clone()
    }
}

fn build<B: Backend>(spec: &ModelSpec, device: &B::Device) -> Result<Trm<B>, String> {
    Trm::from_state_dict(&spec.config, &spec.state, device).map_err(|e| e.to_string())
}

/// The WebGPU device and the model on it, set up on first use.
async fn gpu_model(engine: &SharedEngine, spec: &ModelSpec) -> Result<(Trm<Wgpu>, WgpuDevice, String), String> {
    if let (Some((device, name)), Some(model)) = (engine.borrow().gpu.clone(), engine.borrow().gpu_model.clone()) {
        return Ok((model, device, name));
    }
    let existing = engine.borrow().gpu.clone();
    let (device, name) = match existing {
        Some(d) => d,
        None => {
            let adapter = web::webgpu_adapter().await?;
            let device = WgpuDevice::default();
            init_setup_async::<WebGpu>(&device, Default::default()).await;
            let d = (device, format!("WebGPU ({adapter})"));
            engine.borrow_mut().gpu = Some(d.clone());
            d
        }
    };
    let model = build::<Wgpu>(spec, &device)?;
    engine.borrow_mut().gpu_model = Some(model.clone());
    Ok((model, device, name))
}

/// Solves `maze` with `choice`, calling `on_step` with the answer after every ACT step as
/// it arrives. Returns what ran and how long it took; a cancel ends it with an error.
pub async fn solve(
    engine: &SharedEngine,
    choice: Choice,
    maze: &Grid,
    steps: usize,
    mut on_step: impl FnMut(StepAnswer),
) -> Result<Outcome, String> {
    let cancel = engine.borrow().cancel.clone();
    cancel.set(false);
    if choice == Choice::Server {
        return solve_on_server(maze, steps, on_step).await;
    }
    let spec = engine.borrow().spec().ok_or("no model loaded")?;
    if (maze.rows(), maze.cols()) != (spec.side, spec.side) {
        return Err(format!(
            "the model takes {s}x{s} mazes and this one is {}x{}: resize the maze or load another model",
            maze.rows(),
            maze.cols(),
            s = spec.side
        ));
    }
    let tokens = maze.tokens();
    match choice {
        Choice::WebGpu => {
            let (model, device, name) = gpu_model(engine, &spec).await?;
            let start = web::now_ms();
            let steps = run_steps(&model, &device, &tokens, steps, &cancel, &mut on_step).await?;
            Ok(Outcome { backend: name, elapsed_ms: web::now_ms() - start, steps })
        }
        _ => {
            let cached = engine.borrow().cpu_model.clone();
            let model = match cached {
                Some(m) => m,
                None => {
                    let m = build::<Flex>(&spec, &Default::default())?;
                    engine.borrow_mut().cpu_model = Some(m.clone());
                    m
                }
            };
            let start = web::now_ms();
            let steps = run_steps(&model, &Default::default(), &tokens, steps, &cancel, &mut on_step).await?;
            Ok(Outcome { backend: "CPU (burn Flex, WASM, 1 thread)".into(), elapsed_ms: web::now_ms() - start, steps })
        }
    }
}

/// The recursion, one ACT step at a time, exactly as `trm predict` runs it (fresh carry,
/// the same inputs every step, puzzle id 0).
async fn run_steps<B: Backend>(
    model: &Trm<B>,
    device: &B::Device,
    tokens: &[u8],
    steps: usize,
    cancel: &Cell<bool>,
    on_step: &mut impl FnMut(StepAnswer),
) -> Result<usize, String> {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let batch = make_batch::<B>(model.config(), &ids, &[0], device).map_err(|e| e.to_string())?;
    let mut carry = model.initial_carry(1);
    for step in 0..steps {
        if cancel.get() {
            return Err(format!("cancelled after {step} of {steps} steps"));
        }
        let (next, out) = model.forward(carry, batch.inputs.clone(), batch.puzzle_identifiers.clone());
        carry = next;
        let answer = out.logits.argmax(2).into_data_async().await.map_err(|e| format!("reading the answer: {e:?}"))?;
        let q = out.q_halt.into_data_async().await.map_err(|e| format!("reading q_halt: {e:?}"))?;
        let tokens = answer.iter::<i64>().map(|v| u8::try_from(v).unwrap_or(0)).collect();
        let q_halt = q.iter::<f32>().next().unwrap_or(f32::NAN);
        on_step(StepAnswer { step: step + 1, tokens, q_halt });
        // One turn of the event loop: the page draws this step and sees clicks (cancel).
        web::sleep_ms(0).await;
    }
    Ok(steps)
}

async fn solve_on_server(maze: &Grid, steps: usize, mut on_step: impl FnMut(StepAnswer)) -> Result<Outcome, String> {
    let request = PredictRequest {
        mazes: vec![MazeInput::Text(maze.to_row_major())],
        steps: Some(steps),
        return_steps: true,
    };
    let start = web::now_ms();
    let response: PredictResponse = web::post_json("api/predict", &request).await?;
    let elapsed_ms = web::now_ms() - start;
    let result = response.results.into_iter().next().ok_or("the server answered no result")?;
    match result.steps {
        Some(all) => all.iter().for_each(|s| on_step(StepAnswer::from_row_major(s.step, &s.grid, s.q_halt))),
        None => on_step(StepAnswer::from_row_major(response.steps, &result.grid, result.q_halt)),
    }
    Ok(Outcome {
        backend: format!(
            "server, model {} ({:.0} ms compute, {:.0} ms queued)",
            response.model, response.timing.compute_ms, response.timing.queue_ms
        ),
        elapsed_ms,
        steps: response.steps,
    })
}
