//! The benchmark panel: how many ACT steps, a button, and the table of milliseconds per
//! backend, so that a user with a real GPU can measure it against the CPU worker.

use leptos::prelude::*;

use super::state::State;
use crate::bench::{MAX_STEPS, Row, Summary};
use crate::engine::Choice;

/// The step count, the button and the table.
#[component]
pub fn BenchPanel() -> impl IntoView {
    let state = expect_context::<State>();
    let rows = move || {
        state.bench.get().into_iter().map(|(choice, row)| view! { <BenchRow choice row /> }).collect_view()
    };
    view! {
        <section aria-label="benchmark">
            <h2>"Benchmark"</h2>
            <div class="row">
                <label title="ACT steps timed on each backend, after one warm-up step">"ACT steps "
                    <input id="bench-steps" type="number" min="1" max=MAX_STEPS prop:value=move || state.bench_steps.get().to_string()
                        on:input=move |ev| state.bench_steps.set(event_target_value(&ev).parse::<usize>().unwrap_or(1).clamp(1, MAX_STEPS)) />
                </label>
                <button id="bench-run" on:click=move |_| state.run_bench()
                    disabled=move || state.benching.get() || state.solving.get()>"Time WebGPU and CPU"</button>
            </div>
            <Show when=move || state.bench.with(|rows| !rows.is_empty())>
                <table id="bench-table" data-running=move || state.benching.get().to_string()>
                    <thead><tr>
                        <th>"backend"</th><th>"set-up"</th><th>"first step"</th><th>"median"</th><th>"min"</th><th>"total"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </Show>
            <p class="help">"The model and the maze in use, the same N ACT steps on each backend (halting ignored), \
                one backend after the other, in ms. Set-up: starting the device or the worker and uploading the model \
                (near 0 when a solve did it already); first step: the warm-up, with WebGPU's shader compilation; \
                median, min and total: the N steps after it."</p>
        </section>
    }
}

/// One backend's row: its figures, or why it has none.
#[component]
fn BenchRow(choice: Choice, row: Row) -> impl IntoView {
    let name = choice.short_label();
    let kind = row.kind();
    let cells = match row {
        Row::Timed { backend, summary } => {
            let Summary { set_up_ms, first_ms, median_ms, min_ms, total_ms, steps } = summary;
            let ms = |class: &'static str, v: f64| view! { <td class=class data-ms=v.to_string()>{format!("{v:.1}")}</td> };
            view! {
                <td data-steps=steps>{name}<small>{backend}</small></td>
                {ms("set-up", set_up_ms)}{ms("first", first_ms)}{ms("median", median_ms)}{ms("min", min_ms)}{ms("total", total_ms)}
            }
            .into_any()
        }
        Row::Pending => view! { <td>{name}</td><td colspan="5" class="why">"…"</td> }.into_any(),
        Row::Skipped(why) => view! { <td>{name}</td><td colspan="5" class="why">{format!("skipped: {why}")}</td> }.into_any(),
        Row::Failed(why) => view! { <td>{name}</td><td colspan="5" class="why">{format!("failed: {why}")}</td> }.into_any(),
    };
    view! { <tr data-backend=choice.id() data-status=kind>{cells}</tr> }
}
