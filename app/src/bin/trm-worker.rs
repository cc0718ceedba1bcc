//! Entry point of the CPU worker (Trunk builds it for wasm32 as a worker, loaded by
//! `public/cpu-worker.js`): burn's Flex runs the model off the page's thread.

#[cfg(target_family = "wasm")]
fn main() {
    trm_app::start_worker();
}

/// On the host there is no browser: say where this runs.
#[cfg(not(target_family = "wasm"))]
fn main() {
    eprintln!("trm-worker is the web app's CPU worker: `trunk build --release` builds it into dist/");
    std::process::exit(2);
}
