//! The page: the board beside the panels, keyboard shortcuts, and start-up (default model,
//! a generated maze, datasets, service worker).

mod bench_panel;
mod board;
mod maze_panel;
mod palette;
mod panels;
mod state;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use bench_panel::BenchPanel;
use board::Board;
use maze_panel::MazePanel;
use panels::{ModelPanel, ResultPanel, SolvePanel};
use state::State;

use crate::formats::shortcut;

/// Whether a key press belongs to a text field (typing there must not trigger shortcuts).
fn typing_in_field(ev: &web_sys::KeyboardEvent) -> bool {
    let Some(el) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return false };
    let tag = el.tag_name().to_ascii_lowercase();
    tag == "textarea" || tag == "select" || (tag == "input" && el.get_attribute("type").as_deref() != Some("range"))
}

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let state = State::new();
    provide_context(state);
    state.load_default_model();
    // The page opens with a hard maze ready to solve (30x30, the benchmark's size).
    state.generate_first();
    state.fetch_datasets();
    crate::web::register_service_worker();

    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if typing_in_field(&ev) || ev.alt_key() {
            return;
        }
        if let Some(action) = shortcut(&ev.key(), ev.ctrl_key() || ev.meta_key(), ev.shift_key()) {
            ev.prevent_default();
            state.act(action);
        }
    });
    on_cleanup(move || keys.remove());

    view! {
        <header>
            <h1>"trm"<span>" · Tiny Recursive Model on mazes"</span></h1>
        </header>
        <main>
            <div class="board"><Board /></div>
            <aside>
                <p id="note" class:error=move || state.note.with(|n| n.error)>{move || state.note.with(|n| n.text.clone())}</p>
                <SolvePanel />
                <ResultPanel />
                <MazePanel />
                <ModelPanel />
                <BenchPanel />
            </aside>
        </main>
    }
}
