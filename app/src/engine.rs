//! Where a maze gets solved: on WebGPU through burn's wgpu backend, on the CPU through
//! burn's Flex compiled to WASM in a Web Worker, or by the server (`POST /api/predict`).
//!
//! Local runs go one ACT step at a time and hand the page the answer after every step as it
//! arrives. WebGPU runs from the page's thread (its work is asynchronous: the page yields
//! between steps, and a cancel takes effect between steps). The CPU runs in the worker
//! (`crate::worker`), since a Flex step is synchronous and, with a big model, seconds long:
//! the page stays responsive throughout, and a cancel terminates the worker at once.
//!
//! The size-general model runs the maze on its own grid and stops after the step where it
//! halts (at most the page's step count); the reference model runs every step on its frame
//! placed over the maze, and its answers are pasted back.
//!
//! [`time_steps`] times a fixed number of ACT steps on either local backend through the same
//! paths (the page's benchmark).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::backend::wgpu::{Wgpu, WgpuDevice, graphics::WebGpu, init_setup_async};
use trm_shared::wire::{MazeInput, PredictRequest, PredictResponse};
use trm_shared::maze::{Frame, Grid, Window};

use crate::act_steps::{ActSteps, AnyModel};
use crate::analysis::StepTokens;
use crate::bench::{NotTimed, Timing};
use crate::model_files::ModelSpec;
use crate::web;
use crate::worker::client::{CpuWorker, Event, Inbox};
use crate::worker::protocol::{Job, ModelUpload, Reply, Request};

/// Where to solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// burn's wgpu backend on the browser's WebGPU.
    WebGpu,
    /// burn's Flex CPU backend, in a Web Worker's WASM (one thread, off the page's).
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
            Choice::Cpu => "CPU (burn Flex, WASM, Web Worker)",
            Choice::Server => "Server",
        }
    }

    /// Short name, for the benchmark's table.
    pub fn short_label(self) -> &'static str {
        match self {
            Choice::WebGpu => "WebGPU",
            Choice::Cpu => "CPU worker",
            Choice::Server => "server",
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

/// How a run's ACT steps ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halting {
    /// The reference model: every step asked for ran (its q_halt only advises).
    Fixed,
    /// The size-general model halted (`q_halt > 0`) after this step, and stopped there.
    Halted(usize),
    /// The size-general model did not halt within the step cap.
    Capped,
}

impl Halting {
    fn of(stops_on_halt: bool, halted_at: Option<usize>) -> Halting {
        match (stops_on_halt, halted_at) {
            (false, _) => Halting::Fixed,
            (true, Some(step)) => Halting::Halted(step),
            (true, None) => Halting::Capped,
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
    /// Whether and where the model halted.
    pub halting: Halting,
}

/// The models built so far, per backend, for the current spec.
#[derive(Default)]
pub struct Engine {
    spec: Option<Rc<ModelSpec>>,
    /// Tells the specs apart: the CPU worker keeps a model between solves by this id.
    spec_id: u64,
    gpu: Option<(WgpuDevice, String)>,
    gpu_model: Option<AnyModel<Wgpu>>,
    /// Started on the first CPU solve, and again after a cancel terminated it.
    cpu_worker: Option<CpuWorker>,
    /// Set by [`Engine::cancel`]: the run in progress stops (after its current step on WebGPU).
    cancel: Rc<Cell<bool>>,
}

/// The engine shared by the page's handlers (the page is single-threaded).
pub type SharedEngine = Rc<RefCell<Engine>>;

impl Engine {
    /// Switches to another model; models built for the old one are dropped.
    pub fn set_spec(&mut self, spec: Rc<ModelSpec>) {
        self.spec = Some(spec);
        self.spec_id += 1;
        self.gpu_model = None;
    }

    /// The current model, if one is loaded.
    pub fn spec(&self) -> Option<Rc<ModelSpec>> {
        self.spec.clone()
    }

    /// Stops the run in progress on `running`: on the CPU by terminating the worker (a fresh
    /// one starts with the next CPU solve), elsewhere after the current step.
    pub fn cancel(&mut self, running: Choice) {
        self.cancel.set(true);
        if running == Choice::Cpu {
            self.cpu_worker = None;
        }
    }
}

/// The WebGPU device and the model on it, set up on first use.
/// `NotTimed::Unavailable` when the browser has no WebGPU or no adapter (the benchmark then
/// skips its row), `NotTimed::Failed` when building the model failed.
async fn gpu_model(engine: &SharedEngine, spec: &ModelSpec) -> Result<(AnyModel<Wgpu>, WgpuDevice, String), NotTimed> {
    if let (Some((device, name)), Some(model)) = (engine.borrow().gpu.clone(), engine.borrow().gpu_model.clone()) {
        return Ok((model, device, name));
    }
    let existing = engine.borrow().gpu.clone();
    let (device, name) = match existing {
        Some(d) => d,
        None => {
            let adapter = web::webgpu_adapter().await.map_err(NotTimed::Unavailable)?;
            let device = WgpuDevice::default();
            init_setup_async::<WebGpu>(&device, Default::default()).await;
            let d = (device, format!("WebGPU ({adapter})"));
            engine.borrow_mut().gpu = Some(d.clone());
            d
        }
    };
    let model = spec.build::<Wgpu>(&device)?;
    engine.borrow_mut().gpu_model = Some(model.clone());
    Ok((model, device, name))
}

/// Solves `maze` with `choice`, calling `on_step` with the answer after every ACT step as
/// it arrives; `steps` is the number of ACT steps (the reference model) or their cap (the
/// size-general model). Returns what ran and how long it took; a cancel ends it with an error.
pub async fn solve(
    engine: &SharedEngine,
    choice: Choice,
    maze: &Grid,
    steps: usize,
    mut on_step: impl FnMut(StepTokens),
) -> Result<Outcome, String> {
    let cancel = engine.borrow().cancel.clone();
    cancel.set(false);
    if choice == Choice::Server {
        return solve_on_server(maze, steps, on_step).await;
    }
    let spec = engine.borrow().spec().ok_or("no model loaded")?;
    let window = place(&spec, maze)?;
    let (tokens, rows, cols) = (window.view(maze).tokens(), window.rows, window.cols);
    let window = (!window.is_identity(maze)).then_some(window);
    let stops_on_halt = spec.is_local();
    let mut on_step = move |answer: StepTokens| match &window {
        Some(w) => on_step(StepTokens { tokens: w.paste(maze, &answer.tokens), ..answer }),
        None => on_step(answer),
    };
    if choice == Choice::Cpu {
        let (outcome, halted_at) = solve_on_cpu(engine, &tokens, (rows, cols), steps, on_step).await?;
        return Ok(Outcome { halting: Halting::of(stops_on_halt, halted_at), ..outcome });
    }
    let (model, device, name) = gpu_model(engine, &spec).await?;
    let start = web::now_ms();
    let mut run = ActSteps::new(model, &tokens, rows, cols, steps, &device)?;
    let end = run
        .run(|answer| {
            let step = answer.step;
            on_step(answer);
            let cancel = cancel.clone();
            async move {
                // One turn of the event loop: the page draws this step and sees clicks (cancel).
                web::sleep_ms(0).await;
                if cancel.get() { Err(format!("cancelled after {step} of {steps} steps")) } else { Ok(()) }
            }
        })
        .await?;
    Ok(Outcome { backend: name, elapsed_ms: web::now_ms() - start, steps: end.steps, halting: Halting::of(stops_on_halt, end.halted_at) })
}

/// Where `maze` goes into `spec`'s model: the size-general model takes the maze as it is, on
/// its own grid; a maze of another size is solved in the reference model's frame over its
/// open cells, and each answer pasted back (see trm_shared::maze::Window).
fn place(spec: &ModelSpec, maze: &Grid) -> Result<Window, String> {
    let frame = spec.side().map_or(Frame::AnySize, |side| Frame::Size(side, side));
    Window::place(maze, frame).map_err(|e| {
        let (r, c) = (e.rows, e.cols);
        format!(
            "the model takes {r}x{c} mazes, or mazes whose open cells fit in {r}x{c}; this one is {}x{} \
             and {e}: draw it smaller or load another model",
            maze.rows(),
            maze.cols(),
        )
    })
}

/// Times `steps` ACT steps of the current model on `maze` on `choice` (WebGPU or the CPU
/// worker), after one warm-up step, with halting ignored so that every backend does the same
/// work (the page's benchmark). The wall time includes setting up the device or the worker
/// and the model, where an earlier run has not.
pub async fn time_steps(engine: &SharedEngine, choice: Choice, maze: &Grid, steps: usize) -> Result<Timing, NotTimed> {
    let spec = engine.borrow().spec().ok_or("no model loaded")?;
    let window = place(&spec, maze)?;
    let (tokens, rows, cols) = (window.view(maze).tokens(), window.rows, window.cols);
    let start = web::now_ms();
    let (backend, steps_ms) = match choice {
        Choice::WebGpu => {
            // A browser without WebGPU makes this `NotTimed::Unavailable`: the row is skipped.
            let (model, device, name) = gpu_model(engine, &spec).await?;
            let mut run = ActSteps::fixed(model, &tokens, rows, cols, steps + 1, &device)?;
            (name, run.time_each(web::now_ms).await?)
        }
        Choice::Cpu => {
            let job = |model_id, model| Request::Time(Job { model_id, model, tokens, rows, cols, steps: steps + 1 });
            let stopped = || "the CPU worker was stopped".to_string();
            let inbox = post_to_cpu(engine, job, stopped()).await?;
            match inbox.next().await {
                Event::Reply(Reply::Timed { steps_ms }) => (Choice::Cpu.label().to_string(), steps_ms),
                event => return Err(fail_cpu(engine, cpu_failure(event, stopped())).into()),
            }
        }
        Choice::Server => return Err(NotTimed::Failed("the benchmark times the browser's own backends only".into())),
    };
    Ok(Timing { backend, wall_ms: web::now_ms() - start, steps_ms })
}

/// Posts the request `job` makes of the model id and, when the worker does not hold that
/// model yet, the model; starts the CPU worker first if none runs. `stopped` is the error
/// when a cancel drops the worker meanwhile. Returns where the worker's replies arrive.
async fn post_to_cpu(engine: &SharedEngine, job: impl FnOnce(u64, Option<ModelUpload>) -> Request, stopped: String) -> Result<Inbox, String> {
    let inbox = {
        let mut e = engine.borrow_mut();
        if e.cpu_worker.is_none() {
            e.cpu_worker = Some(CpuWorker::spawn()?);
        }
        e.cpu_worker.as_ref().map(CpuWorker::inbox).ok_or("no CPU worker")?
    };
    if let Err(event) = inbox.ready().await {
        return Err(fail_cpu(engine, cpu_failure(event, stopped)));
    }
    let mut e = engine.borrow_mut();
    let (spec, id) = (e.spec().ok_or("no model loaded")?, e.spec_id);
    let worker = e.cpu_worker.as_mut().ok_or(stopped)?;
    let model = if worker.holds(id) { None } else { Some(ModelUpload::from_spec(&spec)?) };
    worker.send(job(id, model))?;
    Ok(inbox)
}

/// Why a CPU run ended early, `stopped` when the page stopped the worker.
fn cpu_failure(event: Event, stopped: String) -> String {
    match event {
        Event::Reply(Reply::Failed(message)) | Event::Broken(message) => message,
        Event::Stopped => stopped,
        Event::Reply(other) => format!("the CPU worker answered out of turn: {other:?}"),
    }
}

/// Solves in the CPU worker, started here if none runs, sending the model along when the
/// worker does not hold it yet. A cancel drops the worker, which ends the wait at once.
/// Returns the outcome and the step where the size-general model halted.
async fn solve_on_cpu(
    engine: &SharedEngine,
    tokens: &[u8],
    (rows, cols): (usize, usize),
    steps: usize,
    mut on_step: impl FnMut(StepTokens),
) -> Result<(Outcome, Option<usize>), String> {
    let cancelled = |done: usize| format!("cancelled after {done} of {steps} steps");
    let job = |model_id, model| Request::Solve(Job { model_id, model, tokens: tokens.to_vec(), rows, cols, steps });
    let inbox = post_to_cpu(engine, job, cancelled(0)).await?;
    let mut done = 0;
    loop {
        match inbox.next().await {
            Event::Reply(Reply::Step(answer)) => {
                done += 1;
                on_step(answer);
            }
            Event::Reply(Reply::Done { steps, halted_at, elapsed_ms }) => {
                let outcome = Outcome { backend: Choice::Cpu.label().into(), elapsed_ms, steps, halting: Halting::Fixed };
                return Ok((outcome, halted_at));
            }
            event => return Err(fail_cpu(engine, cpu_failure(event, cancelled(done)))),
        }
    }
}

/// Ends a CPU solve with `message`; a worker that failed is dropped (a trapped wasm cannot be
/// trusted) and the next CPU solve starts a fresh one.
fn fail_cpu(engine: &SharedEngine, message: String) -> String {
    engine.borrow_mut().cpu_worker = None;
    message
}

/// Solves on the server, whatever model it runs: the maze goes as its rows (any size: a
/// size-general model takes it as it is, a reference model in its frame), with the page's
/// step count (a cap for a size-general model).
async fn solve_on_server(maze: &Grid, steps: usize, mut on_step: impl FnMut(StepTokens)) -> Result<Outcome, String> {
    let rows = maze.to_lines().lines().map(str::to_string).collect();
    let request = PredictRequest { mazes: vec![MazeInput::Rows(rows)], steps: Some(steps), return_steps: true };
    let start = web::now_ms();
    let response: PredictResponse = web::post_json("api/predict", &request).await?;
    let elapsed_ms = web::now_ms() - start;
    let result = response.results.into_iter().next().ok_or("the server answered no result")?;
    let answers: Vec<StepTokens> = match &result.steps {
        Some(all) => all.iter().map(|s| StepTokens::from_row_major(s.step, &s.grid, s.q_halt)).collect(),
        None => vec![StepTokens::from_row_major(response.steps, &result.grid, result.q_halt)],
    };
    // A size-general model on the server says how many steps this maze ran and where it halted.
    let (steps, halting) = match (result.steps_run, result.halted_at) {
        (Some(run), Some(k)) => (run, Halting::Halted(k)),
        (Some(run), None) => (run, Halting::Capped),
        _ => (response.steps, Halting::Fixed),
    };
    answers.into_iter().for_each(&mut on_step);
    Ok(Outcome {
        backend: format!(
            "server, model {} ({:.0} ms compute, {:.0} ms queued)",
            response.model, response.timing.compute_ms, response.timing.queue_ms
        ),
        elapsed_ms,
        steps,
        halting,
    })
}
