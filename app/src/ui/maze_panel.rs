//! The maze panel: drawing tools, history, size, the generator, datasets, text in and out,
//! and what the maze is. One component per row or group, each taking the page's state from
//! context.

use leptos::prelude::*;
use leptos::task::spawn_local;
use trm_shared::maze::Grid;

use super::state::State;
use crate::editor::{MAX_SIDE, MIN_SIDE, Tool};
use crate::formats::{self, Action, SHORTCUTS_HELP};
use crate::web;

/// The maze section: its parts, in the order the page shows them.
#[component]
pub fn MazePanel() -> impl IntoView {
    view! {
        <section aria-label="maze">
            <h2>"Maze"</h2>
            <ToolButtons />
            <HistoryButtons />
            <SizeControls />
            <DatasetPicker />
            <TextTransfer />
            <Facts />
            <p class="help">{SHORTCUTS_HELP}</p>
        </section>
    }
}

/// One button per drawing tool, the current one pressed.
#[component]
fn ToolButtons() -> impl IntoView {
    let state = expect_context::<State>();
    let tools = Tool::ALL.map(|t| {
        view! {
            <button
                class:active=move || state.tool.get() == t
                aria-pressed=move || (state.tool.get() == t).to_string()
                on:click=move |_| state.tool.set(t)
            >{t.label()}</button>
        }
    });
    view! { <div class="row tools">{tools}</div> }
}

/// Undo, redo, clear, and a new maze from the generator.
#[component]
fn HistoryButtons() -> impl IntoView {
    let state = expect_context::<State>();
    view! {
        <div class="row">
            <button on:click=move |_| state.act(Action::Undo) disabled=move || !state.editor.with(|e| e.can_undo())>"Undo"</button>
            <button on:click=move |_| state.act(Action::Redo) disabled=move || !state.editor.with(|e| e.can_redo())>"Redo"</button>
            <button on:click=move |_| state.act(Action::Clear)>"Clear"</button>
            <button id="generate" on:click=move |_| state.generate()>"Generate"</button>
        </div>
    }
}

/// The side of the (square) maze: typed and applied, or the model's.
#[component]
fn SizeControls() -> impl IntoView {
    let state = expect_context::<State>();
    // The field's text, which follows the maze's size but may be edited before Resize.
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
    view! {
        <div class="row">
            <label>"Size "<input id="size" type="number" min=MIN_SIDE max=MAX_SIDE prop:value=move || size.get()
                on:input=move |ev| size.set(event_target_value(&ev)) /></label>
            <button on:click=resize>"Resize"</button>
            <button on:click=model_size disabled=move || state.model_side.get().is_none()>
                {move || state.model_side.get().map_or("Model size".to_string(), |s| format!("Model size ({s}x{s})"))}
            </button>
        </div>
    }
}

/// A maze from the server's datasets: which split, which maze, and Load.
#[component]
fn DatasetPicker() -> impl IntoView {
    let state = expect_context::<State>();
    let options = move || {
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
        <div class="row">
            <select id="dataset" aria-label="dataset and split" on:change=move |ev| state.dataset.set(event_target_value(&ev))
                disabled=move || state.datasets.with(Vec::is_empty)>
                {options}
            </select>
            <input id="dataset-index" type="number" min="0" aria-label="maze index" prop:value=move || state.dataset_index.get().to_string()
                on:input=move |ev| state.dataset_index.set(event_target_value(&ev).parse().unwrap_or(0)) />
            <button id="load-dataset" on:click=move |_| state.load_dataset_maze() disabled=move || state.datasets.with(Vec::is_empty)>"Load"</button>
        </div>
    }
}

/// Replaces the maze with the one in the text field, saying `what(maze)`.
fn import(state: State, what: impl FnOnce(&Grid) -> String) {
    match formats::import(&state.text.get_untracked()) {
        Ok(grid) => {
            let what = what(&grid);
            state.load_maze(grid, what);
        }
        Err(e) => state.fail(format!("import: {e}")),
    }
}

/// The maze as text: typed or opened and imported, exported, copied, downloaded.
#[component]
fn TextTransfer() -> impl IntoView {
    let state = expect_context::<State>();
    let import_file = move |ev: leptos::ev::Event| {
        let Some(input) = web::input_of(&ev) else { return };
        spawn_local(async move {
            match web::chosen_files(&input).await {
                Ok(files) => match files.first().map(|(_, b)| String::from_utf8_lossy(b).into_owned()) {
                    Some(text) => {
                        state.text.set(text);
                        import(state, |_| "imported the file".into());
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
    view! {
        <details>
            <summary>"Text: import / export"</summary>
            <textarea id="maze-text" rows="8" spellcheck="false" prop:value=move || state.text.get()
                on:input=move |ev| state.text.set(event_target_value(&ev))></textarea>
            <div class="row">
                <button id="import" on:click=move |_| import(state, |g| format!("imported a {}x{} maze", g.rows(), g.cols()))>"Import"</button>
                <button id="export" on:click=export>"Export"</button>
                <button on:click=copy>"Copy 900-char string"</button>
                <button on:click=save>"Download"</button>
                <label class="file">"Open…"<input type="file" accept=".txt,text/plain" on:change=import_file /></label>
            </div>
        </details>
    }
}

/// What the maze is (a puzzle? its shortest path against the hard threshold), and whether
/// the board shows that path.
#[component]
fn Facts() -> impl IntoView {
    let state = expect_context::<State>();
    view! {
        <p class="facts" id="facts">{move || state.facts.with(|f| f.summary())}</p>
        <label><input type="checkbox" prop:checked=move || state.show_path.get()
            on:change=move |_| state.act(Action::TogglePath) />" Show the optimal path"</label>
    }
}
