//! The maze on a canvas: drawn from the editor and the shown ACT step, edited by pointer.

use leptos::html::Canvas;
use leptos::prelude::*;
use trm_shared::maze::{Cell, Grid};
use wasm_bindgen::JsCast;
use web_sys::CanvasRenderingContext2d;

use super::palette;
use super::state::State;

/// What to draw over the maze.
struct Overlay<'a> {
    /// The benchmark's path, when asked for.
    optimal: Option<&'a [usize]>,
    /// The shown answer's tokens, when a run on this very maze has one.
    answer: Option<&'a [u8]>,
    /// Cells that differ from the label.
    wrong: &'a [usize],
}

fn draw(canvas: &web_sys::HtmlCanvasElement, grid: &Grid, overlay: &Overlay) -> Option<()> {
    let ratio = web_sys::window()?.device_pixel_ratio();
    let rect = canvas.get_bounding_client_rect();
    let (w, h) = ((rect.width() * ratio).round().max(1.0), (rect.height() * ratio).round().max(1.0));
    if canvas.width() != w as u32 || canvas.height() != h as u32 {
        canvas.set_width(w as u32);
        canvas.set_height(h as u32);
    }
    let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
    let (rows, cols) = (grid.rows(), grid.cols());
    let size = (w / cols as f64).min(h / rows as f64);
    ctx.set_fill_style_str(palette::GRID_LINE);
    ctx.fill_rect(0.0, 0.0, w, h);
    let gap = if size > 8.0 { 1.0 } else { 0.0 };
    for i in 0..grid.len() {
        let (x, y) = ((i % cols) as f64 * size, (i / cols) as f64 * size);
        let fill = match grid.at(i) {
            Cell::Wall => palette::WALL,
            Cell::Start => palette::START,
            Cell::Goal => palette::GOAL,
            Cell::Open | Cell::Path => palette::OPEN,
        };
        ctx.set_fill_style_str(fill);
        ctx.fill_rect(x + gap, y + gap, size - gap, size - gap);
    }
    if let Some(path) = overlay.optimal {
        ctx.set_fill_style_str(palette::OPTIMAL);
        for &i in &path[1..path.len().saturating_sub(1)] {
            let (x, y) = ((i % cols) as f64 * size, (i / cols) as f64 * size);
            ctx.fill_rect(x + gap, y + gap, size - gap, size - gap);
        }
    }
    if let Some(answer) = overlay.answer {
        // Path cells as dots: a shape, not only a colour.
        ctx.set_fill_style_str(palette::PATH);
        for i in (0..answer.len()).filter(|&i| answer[i] == Cell::Path.token()) {
            let (x, y) = ((i % cols) as f64 * size, (i / cols) as f64 * size);
            ctx.begin_path();
            let _ = ctx.arc(x + size / 2.0, y + size / 2.0, size * 0.3, 0.0, std::f64::consts::TAU);
            ctx.fill();
        }
    }
    // Wrong cells: a cross and a frame.
    ctx.set_stroke_style_str(palette::WRONG);
    ctx.set_line_width((size * 0.12).max(1.5));
    for &i in overlay.wrong {
        let (x, y) = ((i % cols) as f64 * size, (i / cols) as f64 * size);
        let m = size * 0.2;
        ctx.begin_path();
        ctx.move_to(x + m, y + m);
        ctx.line_to(x + size - m, y + size - m);
        ctx.move_to(x + size - m, y + m);
        ctx.line_to(x + m, y + size - m);
        ctx.stroke();
        ctx.stroke_rect(x + 1.5, y + 1.5, size - 3.0, size - 3.0);
    }
    // Letters on S and G, for readers who cannot tell the colours apart.
    ctx.set_fill_style_str(palette::LETTER);
    ctx.set_font(&format!("bold {}px system-ui, sans-serif", (size * 0.62).round()));
    ctx.set_text_align("center");
    ctx.set_text_baseline("middle");
    for i in 0..grid.len() {
        let letter = match grid.at(i) {
            Cell::Start => "S",
            Cell::Goal => "G",
            _ => continue,
        };
        let _ = ctx.fill_text(letter, (i % cols) as f64 * size + size / 2.0, (i / cols) as f64 * size + size * 0.54);
    }
    Some(())
}

/// The cell under a pointer event, if any.
fn cell_at(canvas: &web_sys::HtmlCanvasElement, grid: &Grid, ev: &web_sys::PointerEvent) -> Option<usize> {
    let rect = canvas.get_bounding_client_rect();
    let size = (rect.width() / grid.cols() as f64).min(rect.height() / grid.rows() as f64);
    let (x, y) = (ev.client_x() as f64 - rect.left(), ev.client_y() as f64 - rect.top());
    if x < 0.0 || y < 0.0 || size <= 0.0 {
        return None;
    }
    let (c, r) = ((x / size) as usize, (y / size) as usize);
    (r < grid.rows() && c < grid.cols()).then_some(r * grid.cols() + c)
}

/// The drawing surface.
#[component]
pub fn Board() -> impl IntoView {
    let state = expect_context::<State>();
    let canvas = NodeRef::<Canvas>::new();
    let resized = RwSignal::new(0u32);
    let handle = window_event_listener(leptos::ev::resize, move |_| resized.update(|n| *n += 1));
    on_cleanup(move || handle.remove());

    Effect::new(move |_| {
        resized.track();
        let Some(el) = canvas.get() else { return };
        let optimal = state.show_path.get().then(|| state.facts.with(|f| f.optimal_path.clone())).flatten();
        state.editor.with(|e| {
            let grid = e.grid();
            state.run.with(|run| {
                // An answer is drawn only over the very maze it was solved on.
                let on_this_maze = run.maze.as_ref() == Some(grid);
                let answer = run.steps.get(run.shown).filter(|_| on_this_maze).map(|s| s.tokens.as_slice());
                state.judgement.with(|j| {
                    let wrong = j.as_ref().filter(|_| on_this_maze).map_or(&[][..], |j| j.wrong_cells.as_slice());
                    draw(&el, grid, &Overlay { optimal: optimal.as_deref(), answer, wrong });
                });
            });
        });
    });

    let last = StoredValue::new(None::<usize>);
    let pointer_down = move |ev: web_sys::PointerEvent| {
        let Some(el) = canvas.get() else { return };
        let _ = el.set_pointer_capture(ev.pointer_id());
        let tool = state.tool.get_untracked();
        state.editor.update(|e| {
            let cell = cell_at(&el, e.grid(), &ev);
            last.set_value(cell);
            if let Some(i) = cell {
                e.begin_stroke(tool, i);
            }
        });
    };
    let pointer_move = move |ev: web_sys::PointerEvent| {
        if ev.buttons() == 0 {
            return;
        }
        let Some(el) = canvas.get() else { return };
        let cell = state.editor.with_untracked(|e| cell_at(&el, e.grid(), &ev));
        // Redraw only when the pointer enters another cell.
        if cell.is_some() && cell != last.get_value() {
            last.set_value(cell);
            state.editor.update(|e| e.stroke_to(cell.unwrap_or(usize::MAX)));
        }
    };
    let pointer_up = move |_| state.editor.update(|e| e.end_stroke());
    // The board fills the width it has, up to the window's height, keeping cells square.
    let aspect = move || {
        state.editor.with(|e| {
            let (c, r) = (e.grid().cols(), e.grid().rows());
            format!("aspect-ratio: {c} / {r}; max-width: calc((100vh - 5rem) * {c} / {r})")
        })
    };

    view! {
        <canvas
            id="board"
            node_ref=canvas
            style=aspect
            aria-label="maze editor: click or drag to draw"
            on:pointerdown=pointer_down
            on:pointermove=pointer_move
            on:pointerup=pointer_up
            on:pointercancel=pointer_up
        ></canvas>
    }
}
