//! The page's state (signals, the memos derived from them, the solve action) and the
//! actions the buttons and keys trigger. [`super::App`] provides one [`State`] as context;
//! every component takes it with `expect_context::<State>()`.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use trm_shared::wire::{DatasetInfo, DatasetPage};
use trm_shared::generate::{GenerateConfig, generate_splits};
use trm_shared::maze::{DEFAULT_SIZE, Grid};

use crate::analysis::{Judgement, MazeFacts, StepTokens, facts, judge};
use crate::bench::{self, Row};
use crate::editor::{Editor, Tool, blank};
use crate::engine::{self, Choice, Engine, Outcome, SharedEngine};
// `Action` is the key and button command here; leptos's async action is named in full.
use crate::formats::Action;
use crate::model_files::{self, ModelSpec};
use crate::web;

/// Largest step count the page takes (the size-general model's cap may be raised to it).
pub const MAX_STEPS: usize = 1024;

/// The backends the benchmark times, in order: the server's time would be the network's too.
pub const BENCH_BACKENDS: [Choice; 2] = [Choice::WebGpu, Choice::Cpu];

/// Where a solve stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RunStatus {
    /// Nothing run yet.
    #[default]
    Idle,
    /// Running on this backend.
    Running(Choice),
    /// Finished.
    Done(Outcome),
    /// Failed or cancelled, with the reason.
    Failed(String),
}

/// The latest solve: the maze it ran on and the answer after each ACT step so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// The maze as it was when the solve started.
    pub maze: Option<Grid>,
    /// Answers, one per ACT step, in order.
    pub steps: Vec<StepTokens>,
    /// Index of the step shown.
    pub shown: usize,
    /// Progress.
    pub status: RunStatus,
}

/// A note for the user: an error or a confirmation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Note {
    /// An error (shown in the error colour) or not.
    pub error: bool,
    /// The text.
    pub text: String,
}

/// The model in use, as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// One line: which model, or that one is loading or missing.
    pub line: String,
    /// The side of the mazes it takes (a reference model), or `None` (any size).
    pub side: Option<usize>,
    /// Whether it is the size-general model (the step count is then a cap).
    pub local: bool,
}

impl Default for ModelInfo {
    fn default() -> ModelInfo {
        ModelInfo { line: "loading the default model…".into(), side: None, local: false }
    }
}

/// What the solve action runs: the maze as it was when Solve was pressed, on which backend,
/// for how many ACT steps (their cap for the size-general model).
#[derive(Clone)]
pub struct SolveRequest {
    maze: Grid,
    choice: Choice,
    steps: usize,
}

/// The blank benchmark-sized maze the page holds until its first generated maze arrives.
fn opening_maze() -> Grid {
    blank(DEFAULT_SIZE, DEFAULT_SIZE).unwrap_or_else(|_| Grid::open(2, 2))
}

/// Every signal of the page and what is derived from them, cheap to copy into handlers.
#[derive(Clone, Copy)]
pub struct State {
    pub editor: RwSignal<Editor>,
    pub tool: RwSignal<Tool>,
    pub show_path: RwSignal<bool>,
    pub choice: RwSignal<Choice>,
    pub steps: RwSignal<usize>,
    pub run: RwSignal<Run>,
    pub model: RwSignal<ModelInfo>,
    pub note: RwSignal<Note>,
    pub datasets: RwSignal<Vec<DatasetInfo>>,
    pub dataset: RwSignal<String>,
    pub dataset_index: RwSignal<usize>,
    pub text: RwSignal<String>,
    pub engine: StoredValue<SharedEngine, LocalStorage>,
    /// ACT steps the benchmark times on each backend.
    pub bench_steps: RwSignal<usize>,
    /// The benchmark's table: a row per backend timed (or being timed).
    pub bench: RwSignal<Vec<(Choice, Row)>>,
    /// Whether the benchmark is running.
    pub benching: RwSignal<bool>,
    /// Runs one solve, streaming its steps into `run`.
    solver: leptos::prelude::Action<SolveRequest, ()>,
    /// Whether a solve is in progress (the solve action is pending).
    pub solving: Memo<bool>,
    /// Facts about the maze in the editor: one BFS per edit, shared by the board and the panel.
    pub facts: Memo<MazeFacts>,
    /// The answer shown (the run's step at the slider), if any.
    pub shown: Memo<Option<StepTokens>>,
    /// The shown answer judged against the maze it was solved on.
    pub judgement: Memo<Option<Judgement>>,
    /// The side of the mazes the model takes (`None`: any size).
    pub model_side: Memo<Option<usize>>,
    /// Whether the model is the size-general one (the step count is then a cap).
    pub model_local: Memo<bool>,
}

impl State {
    /// Fresh state: a blank benchmark-sized maze until the generator's first maze arrives.
    pub fn new() -> State {
        let editor = RwSignal::new(Editor::new(opening_maze()));
        let run = RwSignal::new(Run::default());
        let model = RwSignal::new(ModelInfo::default());
        let engine = StoredValue::new_local(Rc::new(std::cell::RefCell::new(Engine::default())));
        let solver = leptos::prelude::Action::new_local(move |request: &SolveRequest| {
            let SolveRequest { maze, choice, steps } = request.clone();
            let engine = engine.get_value();
            async move {
                let on_step = |s: StepTokens| {
                    run.update(|r| {
                        r.steps.push(s);
                        r.shown = r.steps.len() - 1;
                    })
                };
                let result = engine::solve(&engine, choice, &maze, steps, on_step).await;
                run.update(|r| {
                    r.status = match result {
                        Ok(o) => RunStatus::Done(o),
                        Err(e) => RunStatus::Failed(e),
                    }
                });
            }
        });
        let shown = Memo::new(move |_| run.with(|r| r.steps.get(r.shown).cloned()));
        let judgement = Memo::new(move |_| run.with(|r| Some(judge(r.maze.as_ref()?, &r.steps.get(r.shown)?.tokens))));
        State {
            editor,
            tool: RwSignal::new(Tool::Wall),
            show_path: RwSignal::new(false),
            choice: RwSignal::new(Choice::WebGpu),
            steps: RwSignal::new(16),
            run,
            model,
            note: RwSignal::new(Note::default()),
            datasets: RwSignal::new(Vec::new()),
            dataset: RwSignal::new(String::new()),
            dataset_index: RwSignal::new(0),
            text: RwSignal::new(String::new()),
            engine,
            bench_steps: RwSignal::new(bench::DEFAULT_STEPS),
            bench: RwSignal::new(Vec::new()),
            benching: RwSignal::new(false),
            solver,
            solving: solver.pending(),
            facts: Memo::new(move |_| editor.with(|e| facts(e.grid()))),
            shown,
            judgement,
            model_side: Memo::new(move |_| model.with(|m| m.side)),
            model_local: Memo::new(move |_| model.with(|m| m.local)),
        }
    }

    /// Shows a confirmation.
    pub fn say(&self, text: impl Into<String>) {
        self.note.set(Note { error: false, text: text.into() });
    }

    /// Shows an error.
    pub fn fail(&self, text: impl Into<String>) {
        self.note.set(Note { error: true, text: text.into() });
    }

    /// Runs a key or button action.
    pub fn act(&self, action: Action) {
        match action {
            Action::Tool(t) => self.tool.set(t),
            Action::Undo => self.editor.update(|e| {
                e.undo();
            }),
            Action::Redo => self.editor.update(|e| {
                e.redo();
            }),
            Action::Clear => self.editor.update(Editor::clear),
            Action::Generate => self.generate(),
            Action::Solve => self.solve(),
            Action::Cancel => self.cancel(),
            Action::StepBack => self.run.update(|r| r.shown = r.shown.saturating_sub(1)),
            Action::StepForward => self.run.update(|r| r.shown = (r.shown + 1).min(r.steps.len().saturating_sub(1))),
            Action::TogglePath => self.show_path.update(|s| *s = !*s),
        }
    }

    /// Replaces the maze (undoable) and says why.
    pub fn load_maze(&self, grid: Grid, what: String) {
        self.editor.update(|e| e.replace(grid));
        self.say(what);
    }

    /// Solves the maze in the editor with the chosen backend, unless a solve is running.
    pub fn solve(&self) {
        if self.solving.get_untracked() || self.benching.get_untracked() {
            return;
        }
        let maze = self.editor.with_untracked(|e| e.grid().clone());
        if let Err(e) = maze.validate_puzzle() {
            self.fail(format!("cannot solve: {e}"));
            return;
        }
        let choice = self.choice.get_untracked();
        self.run.set(Run { maze: Some(maze.clone()), steps: Vec::new(), shown: 0, status: RunStatus::Running(choice) });
        self.note.set(Note::default());
        // The handle is dropped: a cancel goes through the engine, which stops the backend
        // and ends the solve with an error, rather than dropping its future.
        self.solver.dispatch_local(SolveRequest { maze, choice, steps: self.steps.get_untracked() });
    }

    /// Stops the solve in progress: on the CPU at once (its worker is terminated), on
    /// WebGPU after the current step (a server solve runs to its end).
    pub fn cancel(&self) {
        if let RunStatus::Running(choice) = self.run.with_untracked(|r| r.status.clone()) {
            self.engine.with_value(|e| e.borrow_mut().cancel(choice));
        }
    }

    /// Times `bench_steps` ACT steps of the model on the maze in the editor on each backend of
    /// [`BENCH_BACKENDS`], one after the other (side by side they would slow each other down),
    /// filling the table as each finishes. Not while a solve runs: it would share the backends.
    pub fn run_bench(&self) {
        if self.solving.get_untracked() || self.benching.get_untracked() {
            return;
        }
        let state = *self;
        let maze = self.editor.with_untracked(|e| e.grid().clone());
        let steps = self.bench_steps.get_untracked();
        let engine = self.engine.get_value();
        self.bench.set(BENCH_BACKENDS.map(|c| (c, Row::Pending)).to_vec());
        self.benching.set(true);
        spawn_local(async move {
            for (i, choice) in BENCH_BACKENDS.into_iter().enumerate() {
                // A browser without WebGPU, or without an adapter, skips its row (`Row::of`).
                let row = Row::of(engine::time_steps(&engine, choice, &maze, steps).await);
                state.bench.update(|rows| rows[i].1 = row);
            }
            state.benching.set(false);
        });
    }

    /// A new hard maze from the generator, in this page (the size of the editor).
    pub fn generate(&self) {
        self.generate_maze(false);
    }

    /// The maze the page opens with: a hard one of the editor's size (30x30), with no undo
    /// step before it.
    pub fn generate_first(&self) {
        self.generate_maze(true);
    }

    fn generate_maze(&self, first: bool) {
        let state = *self;
        let (rows, cols) = self.editor.with_untracked(|e| (e.grid().rows(), e.grid().cols()));
        let seed = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        self.say(format!("generating a {rows}x{cols} maze (seed {seed})…"));
        spawn_local(async move {
            // Let the note paint before the generator takes the thread.
            web::sleep_ms(0).await;
            let config = GenerateConfig { rows, cols, seed, ..GenerateConfig::default() };
            let start = web::now_ms();
            match generate_splits(&config, &[1], &mut |_| {}) {
                Ok(mut splits) => match splits.pop().and_then(|mut s| s.pop()) {
                    Some(m) => {
                        let ms = web::now_ms() - start;
                        let what = format!("generated a {rows}x{cols} maze in {ms:.0} ms: {} moves, seed {seed}", m.moves);
                        if first {
                            // Unless the maze was replaced meanwhile (a reference default model's
                            // size, an import): the first maze is no edit to undo.
                            let untouched = state.editor.with_untracked(|e| !e.can_undo() && e.grid() == &opening_maze());
                            if untouched {
                                state.editor.set(Editor::new(m.puzzle.without_path()));
                                state.say(what);
                            }
                        } else {
                            state.load_maze(m.puzzle, what);
                        }
                    }
                    None => state.fail("the generator returned no maze"),
                },
                Err(e) => state.fail(format!("generate: {e}")),
            }
        });
    }

    /// Loads maze `dataset_index` of the chosen `dataset/split` from the server.
    pub fn load_dataset_maze(&self) {
        let state = *self;
        let which = self.dataset.get_untracked();
        let index = self.dataset_index.get_untracked();
        if which.is_empty() {
            self.fail("no dataset chosen (the server lists its datasets under /api/datasets)");
            return;
        }
        spawn_local(async move {
            let url = format!("api/datasets/{which}?offset={index}&limit=1");
            let page = web::get_json::<DatasetPage>(&url).await;
            let result = page.and_then(|p| {
                let item = p.items.first().ok_or_else(|| format!("{which} has {} mazes; index {index} is past the end", p.total))?;
                let grid = Grid::parse_row_major(&item.input, p.rows, p.cols).map_err(|e| e.to_string())?;
                Ok((grid, item.moves))
            });
            match result {
                Ok((grid, moves)) => state.load_maze(grid, format!("loaded {which} #{index} ({moves} moves)")),
                Err(e) => state.fail(e),
            }
        });
    }

    /// Asks the server for its datasets (quietly empty when there is no server).
    pub fn fetch_datasets(&self) {
        let state = *self;
        spawn_local(async move {
            if let Ok(list) = web::get_json::<trm_shared::wire::DatasetList>("api/datasets").await {
                if let Some(first) = list.datasets.iter().find_map(|d| d.splits.first().map(|s| format!("{}/{}", d.name, s.name))) {
                    state.dataset.set(first);
                }
                state.datasets.set(list.datasets);
            }
        });
    }

    /// Makes `spec` the model in use: local backends rebuild, the step count becomes the
    /// model's default, and the editor takes a reference model's size (the size-general model
    /// takes the maze as it is).
    pub fn use_model(&self, spec: ModelSpec) {
        let side = spec.side();
        self.model.set(ModelInfo { line: spec.describe(), side, local: spec.is_local() });
        self.steps.set(spec.halt_max_steps().clamp(1, MAX_STEPS));
        self.engine.with_value(|e| e.borrow_mut().set_spec(Rc::new(spec)));
        let Some(side) = side else { return };
        let same = self.editor.with_untracked(|e| (e.grid().rows(), e.grid().cols()) == (side, side));
        if !same && let Err(e) = self.editor.try_update(|e| e.resize(side, side)).unwrap_or(Ok(())) {
            self.fail(e);
        }
    }

    /// Loads the committed default model (`models/default/`); a reference model's editor
    /// opens at its size.
    pub fn load_default_model(&self) {
        let state = *self;
        spawn_local(async move {
            let result = async {
                let config = web::get_text("models/default/config.toml").await?;
                if let Some(side) = model_files::data_size("config.toml", &config) {
                    // Open at the model's size at once, before the weights arrive.
                    if let Ok(grid) = blank(side, side) {
                        state.editor.set(Editor::new(grid));
                    }
                }
                let bytes = web::get_bytes("models/default/model.safetensors").await?;
                model_files::load(("config.toml", &config), ("model.safetensors", &bytes), "default")
            }
            .await;
            match result {
                Ok(spec) => state.use_model(spec),
                Err(e) => {
                    // The engine keeps the model it had, so its side and kind stay as they are.
                    state.model.update(|m| m.line = "no model".into());
                    state.fail(format!("default model: {e}"));
                }
            }
        });
    }
}
