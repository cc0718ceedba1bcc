//! The model, solve and answer panels (the maze's is in `maze_panel`).

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::state::{MAX_STEPS, RunStatus, State};
use crate::analysis::Verdict;
use crate::engine::{Choice, Halting};
use crate::model_files;
use crate::web;

/// The model in use and opening another.
#[component]
pub fn ModelPanel() -> impl IntoView {
    let state = expect_context::<State>();
    let open = move |ev: leptos::ev::Event| {
        let Some(input) = web::input_of(&ev) else { return };
        state.say("reading the model files…");
        spawn_local(async move {
            let result = async {
                let files = web::chosen_files(&input).await?;
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
            <p id="model-line">{move || state.model.with(|m| m.line.clone())}</p>
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
pub fn SolvePanel() -> impl IntoView {
    let state = expect_context::<State>();
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
                <button id="solve" class="primary" on:click=move |_| state.solve() disabled=move || state.solving.get() || state.benching.get()>"Solve"</button>
                <button id="cancel" on:click=move |_| state.cancel() disabled=move || !state.solving.get()>"Cancel"</button>
            </div>
            <p id="status" data-status=status_kind data-halted=halted>{status}</p>
        </section>
    }
}

/// The answer: step slider, q_halt per step, verdict.
#[component]
pub fn ResultPanel() -> impl IntoView {
    let state = expect_context::<State>();
    let shown = state.shown;
    let verdict_class = move || match state.judgement.with(|j| j.as_ref().map(|j| j.verdict)) {
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
                    {move || shown.with(|s| s.as_ref().map(|s| format!("ACT step {} of {}", s.step, state.run.with(|r| r.steps.len()))))}
                    <input id="step-slider" type="range" min="0" max=move || state.run.with(|r| r.steps.len().saturating_sub(1))
                        prop:value=move || state.run.with(|r| r.shown)
                        on:input=move |ev| state.run.update(|r| r.shown = event_target_value(&ev).parse().unwrap_or(0)) />
                </label>
                <div class="qbars" aria-label="q_halt per step">{q_bars}</div>
                <p id="halt-note">{move || shown.get().map(|s| {
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
                <p class=verdict_class id="verdict">{move || state.judgement.with(|j| j.as_ref().map(|j| j.line.clone()))}</p>
                <output id="answer" data-step=move || shown.with(|s| s.as_ref().map_or(0, |s| s.step))
                    data-grid=move || shown.with(|s| s.as_ref().map(|s| s.to_row_major()).unwrap_or_default())
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
