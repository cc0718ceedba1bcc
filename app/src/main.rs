//! Entry point of the web app (Trunk builds it for wasm32).

#[cfg(target_family = "wasm")]
fn main() {
    trm_app::start();
}

/// On the host there is no page: say how to get one.
#[cfg(not(target_family = "wasm"))]
fn main() {
    eprintln!("trm-app runs in a browser: build it with `trunk build --release` and open it through `trm serve`");
    std::process::exit(2);
}
