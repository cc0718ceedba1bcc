//! The side panels: maze tools, model, solving, and the answer.

use leptos::prelude::*;
use leptos::task::spawn_local;
use trm_shared::maze::Grid;
use wasm_bindgen::JsCast;

use super::state::{MAX_STEPS, RunStatus, State};
use crate::analysis::{Verdict, facts, score};
use crate::editor::{MAX_SIDE, MIN_SIDE, Tool};
use crate::engine::{Choice, Halting};
use crate::formats::{self, Action, SHORTCUTS_HELP};
use crate::model_files;
use crate::web;

/// Files chosen in an `<input type=file>`, read whole.
async fn chosen_files(input: &web_sys::HtmlInputElement) -> Result<Vec<(String, Vec<u8>)>, String> {
    let list = input.files().ok_or("no files chosen")?;
    let mut out = Vec::new();
    for i in 0..list.length() {
        if let Some(f) = list.get(i) {
            out.push((f.name(), web::read_file(&f).await?));
        }
    }
    Ok(out)
}

fn input_of(ev: &leptos::ev::Event) -> Option<web_sys::HtmlInputElement> {
    ev.target()?.dyn_into().ok()
}

/// Drawing tools, history, size, generator, datasets, text in and out.
#[component]
pub fn MazePanel(state: State) -> impl IntoView {
    let size = RwSignal::new(String::new());
    Effect::new(move |_| size.set(state.editor.with(|e| e.grid().rows().to_string())));
    let resize = move |_| {
        let side = size.get_untracked().trim().parse::<usize>().unwrap_or(0);
        if let Err(e) = state.editor.try_update(|e| e.resize(side, side)).unwrap_or(Ok(())) {
            state.fail(e);
        }
    };
    let model_size = move |_| {
        if let Some(side) = state.model_side.get_untracked() {
            let _ = state.editor.try_update(|e| e.resize(side, side));
        }
    };
    let tools = Tool::ALL.map(|t| {
        view! {
            <button
                class:active=move || state.tool.get() == t
                aria-pressed=move || (state.tool.get() == t).to_string()
                on:click=move |_| state.tool.set(t)
            >{t.label()}</button>
        }
    });
    let import = move |_| match formats::import(&state.text.get_untracked()) {
        Ok(grid) => {
            let what = format!("imported a {}x{} maze", grid.rows(), grid.cols());
            state.load_maze(grid, what);
        }
        Err(e) => state.fail(format!("import: {e}")),
    };
    let import_file = move |ev: leptos::ev::Event| {
        let Some(input) = input_of(&ev) else { return };
        spawn_local(async move {
            match chosen_files(&input).await {
                Ok(files) => match files.first().map(|(_, b)| String::from_utf8_lossy(b).into_owned()) {
                    Some(text) => {
                        state.text.set(text);
                        match formats::import(&state.text.get_untracked()) {
                            Ok(grid) => state.load_maze(grid, "imported the file".into()),
                            Err(e) => state.fail(format!("import: {e}")),
                        }
                    }
                    None => state.fail("no file chosen"),
                },
                Err(e) => state.fail(e),
            }
        });
    };
    let export = move |_| state.text.set(state.editor.with_untracked(|e| formats::export_lines(e.grid())));
    let copy = move |_| {
        let text = state.editor.with_untracked(|e| formats::export_row_major(e.grid()));
        spawn_local(async move {
            match web::copy_text(&text).await {
                Ok(()) => state.say(format!("copied the {}-character string", text.chars().count())),
                Err(e) => state.fail(e),
            }
        });
    };
    let save = move |_| {
        let text = state.editor.with_untracked(|e| formats::export_lines(e.grid()));
        if let Err(e) = web::download("maze.txt", &text) {
            state.fail(e);
        }
    };
    let dataset_options = move || {
        state
            .datasets
            .get()
            .into_iter()
            .flat_map(|d| {
                d.splits
                    .into_iter()
                    .map(move |s| (format!("{}/{}", d.name, s.name), format!("{} {} ({} mazes, {}x{})", d.name, s.name, s.examples, s.rows, s.cols)))
            })
            .map(|(value, label)| view! { <option value=value.clone() selected=move || state.dataset.get() == value>{label}</option> })
            .collect_view()
    };
    view! {
        <section aria-label="maze">
            <h2>"Maze"</h2>
            <div class="row tools">{tools}</div>
            <div class="row">
                <button on:click=move |_| state.act(Action::Undo) disabled=move || !state.editor.with(|e| e.can_undo())>"Undo"</button>
                <button on:click=move |_| state.act(Action::Redo) disabled=move || !state.editor.with(|e| e.can_redo())>"Redo"</button>
                <button on:click=move |_| state.act(Action::Clear)>"Clear"</button>
                <button id="generate" on:click=move |_| state.generate()>"Generate"</button>
            </div>
            <div class="row">
                <label>"Size "<input id="size" type="number" min=MIN_SIDE max=MAX_SIDE prop:value=move || size.get()
                    on:input=move |ev| size.set(event_target_value(&ev)) /></label>
                <button on:click=resize>"Resize"</button>
                <button on:click=model_size disabled=move || state.model_side.get().is_none()>
                    {move || state.model_side.get().map_or("Model size".to_string(), |s| format!("Model size ({s}x{s})"))}
                </button>
            </div>
            <div class="row">
                <select id="dataset" aria-label="dataset and split" on:change=move |ev| state.dataset.set(event_target_value(&ev))
                    disabled=move || state.datasets.with(Vec::is_empty)>
                    {dataset_options}
                </select>
                <input id="dataset-index" type="number" min="0" aria-label="maze index" prop:value=move || state.dataset_index.get().to_string()
                    on:input=move |ev| state.dataset_index.set(event_target_value(&ev).parse().unwrap_or(0)) />
                <button id="load-dataset" on:click=move |_| state.load_dataset_maze() disabled=move || state.datasets.with(Vec::is_empty)>"Load"</button>
            </div>
            <details>
                <summary>"Text: import / export"</summary>
                <textarea id="maze-text" rows="8" spellcheck="false" prop:value=move || state.text.get()
                    on:input=move |ev| state.text.set(event_target_value(&ev))></textarea>
                <div class="row">
                    <button id="import" on:click=import>"Import"</button>
                    <button id="export" on:click=export>"Export"</button>
                    <button on:click=copy>"Copy 900-char string"</button>
                    <button on:click=save>"Download"</button>
                    <label class="file">"Open…"<input type="file" accept=".txt,text/plain" on:change=import_file /></label>
                </div>
            </details>
            <p class="facts" id="facts">{move || state.editor.with(|e| facts(e.grid()).summary())}</p>
            <label><input type="checkbox" prop:checked=move || state.show_path.get()
                on:change=move |_| state.act(Action::TogglePath) />" Show the optimal path"</label>
            <p class="help">{SHORTCUTS_HELP}</p>
        </section>
    }
}

/// The model in use and opening another.
#[component]
pub fn ModelPanel(state: State) -> impl IntoView {
    let open = move |ev: leptos::ev::Event| {
        let Some(input) = input_of(&ev) else { return };
        state.say("reading the model files…");
        spawn_local(async move {
            let result = async {
                let files = chosen_files(&input).await?;
                let (config, checkpoint) = model_files::pick_files(&files)?;
                let text = String::from_utf8(config.1.clone()).map_err(|_| format!("{}: not UTF-8 text", config.0))?;
                model_files::load((&config.0, &text), (&checkpoint.0, &checkpoint.1), &checkpoint.0)
            }
            .await;
            input.set_value("");
            match result {
                Ok(spec) => {
                    let line = spec.describe();
                    state.use_model(spec);
                    state.say(format!("loaded {line}"));
                }
                Err(e) => state.fail(format!("model: {e}")),
            }
        });
    };
    view! {
        <section aria-label="model">
            <h2>"Model"</h2>
            <p id="model-line">{move || state.model_line.get()}</p>
            <div class="row">
                <label class="file">"Open model files…"
                    <input id="model-files" type="file" multiple on:change=open />
                </label>
                <button on:click=move |_| state.load_default_model()>"Default model"</button>
            </div>
            <p class="help">"A checkpoint (model.safetensors, or a reference step_N) and its config (config.toml or all_config.yaml), chosen together. \
                A config.toml with mixer = \"local\" is the size-general model: any maze size, and it halts by itself."</p>
        </section>
    }
}

/// Backend choice, steps, solve and cancel, and what ran.
#[component]
pub fn SolvePanel(state: State) -> impl IntoView {
    let choices = Choice::ALL.map(|c| {
        view! {
            <label>
                <input type="radio" name="backend" value=c.id() prop:checked=move || state.choice.get() == c
                    on:change=move |_| state.choice.set(c) />
                {c.label()}
            </label>
        }
    });
    let status = move || {
        state.run.with(|r| match &r.status {
            RunStatus::Idle => String::new(),
            RunStatus::Running(c) => format!("running on {} … step {}", c.label(), r.steps.len()),
            RunStatus::Done(o) => match o.halting {
                Halting::Fixed => format!("ran on {} in {:.0} ms ({} steps)", o.backend, o.elapsed_ms, o.steps),
                Halting::Halted(k) => format!("ran on {} in {:.0} ms: halted at ACT step {k} (q_halt > 0)", o.backend, o.elapsed_ms),
                Halting::Capped => {
                    format!("ran on {} in {:.0} ms: {} ACT steps, no halt within the cap", o.backend, o.elapsed_ms, o.steps)
                }
            },
            RunStatus::Failed(e) => format!("stopped: {e}"),
        })
    };
    let status_kind = move || state.run.with(|r| match r.status {
        RunStatus::Done(_) => "done",
        RunStatus::Failed(_) => "failed",
        RunStatus::Running(_) => "running",
        RunStatus::Idle => "idle",
    });
    // For tests and scripts: the step where the model halted, "cap" when it did not within
    // the cap, empty for the reference model (or before a run ends).
    let halted = move || {
        state.run.with(|r| match &r.status {
            RunStatus::Done(o) => match o.halting {
                Halting::Halted(k) => k.to_string(),
                Halting::Capped => "cap".into(),
                Halting::Fixed => String::new(),
            },
            _ => String::new(),
        })
    };
    let steps_label = move || if state.model_local.get() { "Max ACT steps " } else { "ACT steps " };
    let steps_title = move || {
        if state.model_local.get() {
            "the size-general model stops when it halts (q_halt > 0), at the latest after this many steps"
        } else {
            "the reference model runs exactly this many steps"
        }
    };
    view! {
        <section aria-label="solve">
            <h2>"Solve"</h2>
            <div class="choices">{choices}</div>
            <div class="row">
                <label title=steps_title>{steps_label}<input id="steps" type="number" min="1" max=MAX_STEPS prop:value=move || state.steps.get().to_string()
                    on:input=move |ev| state.steps.set(event_target_value(&ev).parse::<usize>().unwrap_or(1).clamp(1, MAX_STEPS)) /></label>
                <button id="solve" class="primary" on:click=move |_| state.solve() disabled=move || state.busy.get()>"Solve"</button>
                <button id="cancel" on:click=move |_| state.cancel() disabled=move || !state.busy.get()>"Cancel"</button>
            </div>
            <p id="status" data-status=status_kind data-halted=halted>{status}</p>
        </section>
    }
}

/// The answer: step slider, q_halt per step, verdict.
#[component]
pub fn ResultPanel(state: State) -> impl IntoView {
    let shown = move || state.run.with(|r| r.steps.get(r.shown).cloned());
    let verdict = move || {
        let run = state.run.get();
        let step = run.steps.get(run.shown)?;
        let maze: &Grid = run.maze.as_ref()?;
        Some(match score(maze, &step.tokens) {
            Ok(s) => (s.verdict, s.summary()),
            Err(e) => (Verdict::Invalid, e.to_string()),
        })
    };
    let verdict_class = move || match verdict().map(|v| v.0) {
        Some(Verdict::Exact) => "verdict exact",
        Some(Verdict::Shortest) => "verdict shortest",
        Some(Verdict::Longer) => "verdict longer",
        Some(Verdict::Invalid) => "verdict invalid",
        None => "verdict",
    };
    let q_bars = move || {
        state.run.with(|r| {
            r.steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let q = s.q_halt;
                    // Bar height: the halting probability sigmoid(q).
                    let p = 1.0 / (1.0 + (-q).exp());
                    let title = format!("step {}: q_halt {q:.2} (p_halt {p:.2})", s.step);
                    view! {
                        <button class="qbar" class:current={i == r.shown} class:halt={q > 0.0} title=title.clone() aria-label=title
                            on:click=move |_| state.run.update(|r| r.shown = i)>
                            <span style=format!("height: {:.0}%", (p * 100.0).max(2.0))></span>
                        </button>
                    }
                })
                .collect_view()
        })
    };
    view! {
        <section aria-label="answer">
            <h2>"Answer"</h2>
            <Show when=move || state.run.with(|r| !r.steps.is_empty()) fallback=|| view! { <p class="help">"Solve to watch the recursion step by step."</p> }>
                <label class="slider">
                    {move || shown().map(|s| format!("ACT step {} of {}", s.step, state.run.with(|r| r.steps.len())))}
                    <input id="step-slider" type="range" min="0" max=move || state.run.with(|r| r.steps.len().saturating_sub(1))
                        prop:value=move || state.run.with(|r| r.shown)
                        on:input=move |ev| state.run.update(|r| r.shown = event_target_value(&ev).parse().unwrap_or(0)) />
                </label>
                <div class="qbars" aria-label="q_halt per step">{q_bars}</div>
                <p id="halt-note">{move || shown().map(|s| {
                    let halted_here = state.run.with(|r| matches!(&r.status, RunStatus::Done(o) if o.halting == Halting::Halted(s.step)));
                    let what = if halted_here {
                        "the model halted here"
                    } else if s.q_halt > 0.0 {
                        "the model would halt here"
                    } else {
                        "the model would keep thinking"
                    };
                    format!("q_halt {:.3}: {what}", s.q_halt)
                })}</p>
                <p class=verdict_class id="verdict">{move || verdict().map(|v| v.1)}</p>
                <output id="answer" data-step=move || shown().map(|s| s.step).unwrap_or(0)
                    data-grid=move || shown().map(|s| s.to_row_major()).unwrap_or_default()
                    data-final=move || state.run.with(|r| matches!(r.status, RunStatus::Done(_)) && r.shown + 1 == r.steps.len()).to_string()></output>
            </Show>
            <ul class="legend">
                <li><i class="sw start"></i>"start"</li>
                <li><i class="sw goal"></i>"goal"</li>
                <li><i class="sw wall"></i>"wall"</li>
                <li><i class="sw path"></i>"model's path"</li>
                <li><i class="sw optimal"></i>"optimal path"</li>
                <li><i class="sw wrong"></i>"wrong cell"</li>
            </ul>
        </section>
    }
}
