//! The trm web app: a Leptos client-side app, built with Trunk, that edits mazes and solves
//! them with the TRM model from `trm_shared`, in the browser (WebGPU or CPU) or on the server.
//!
//! The logic modules (editing, formats, verdicts, model files, the ACT step loop on any
//! burn backend, the CPU worker's messages, the benchmark's figures) are plain Rust, tested
//! on the host with `cargo test -p trm-app` (the step loop on Flex); the page itself (`ui`,
//! `engine`, `web`) and the CPU worker's two sides are wasm-only. Two binaries use this
//! library: the page (`src/main.rs`) and the CPU worker (`src/bin/trm-worker.rs`).

pub mod act_steps;
pub mod analysis;
pub mod bench;
pub mod editor;
pub mod formats;
pub mod model_files;
pub mod worker;

#[cfg(target_family = "wasm")]
mod engine;
#[cfg(target_family = "wasm")]
mod ui;
#[cfg(target_family = "wasm")]
mod web;

/// Mounts the app on the page's body; panics are reported in the console and on the page.
#[cfg(target_family = "wasm")]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!("the app crashed: {info}");
        web_sys::console::error_1(&message.clone().into());
        if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
            let _ = body.insert_adjacent_html("afterbegin", &format!("<p class=\"crash\">{}</p>", escape(&message)));
        }
    }));
    leptos::mount::mount_to_body(ui::App);
}

/// Runs the CPU worker: called by the worker binary's `main` inside a Web Worker.
#[cfg(target_family = "wasm")]
pub fn start_worker() {
    worker::runner::start();
}

#[cfg(target_family = "wasm")]
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
