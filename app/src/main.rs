//! The trm web app: a Leptos client-side app, built with Trunk.

use leptos::prelude::*;

fn main() {
    leptos::mount::mount_to_body(App);
}

/// Placeholder page until the app issue lands.
#[component]
fn App() -> impl IntoView {
    view! { <h1>"trm"</h1> }
}
