//! Thin async wrappers over browser APIs: fetch, timers, files, clipboard, downloads.
//! Every failure comes back as a message for the page, never a panic.

use js_sys::{Promise, Uint8Array};
use serde::Serialize;
use serde::de::DeserializeOwned;
use trm_shared::wire::ErrorBody;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

/// A JS error as text.
pub fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}

fn window() -> Result<web_sys::Window, String> {
    web_sys::window().ok_or_else(|| "no window (not running in a page)".to_string())
}

/// Milliseconds since the page (or the worker) started, sub-millisecond where the browser allows.
pub fn now_ms() -> f64 {
    let performance = match web_sys::window() {
        Some(w) => w.performance(),
        None => js_sys::global().dyn_into::<web_sys::WorkerGlobalScope>().ok().and_then(|s| s.performance()),
    };
    performance.map_or(0.0, |p| p.now())
}

/// Waits `ms` milliseconds; with 0, gives the event loop one turn (input, painting).
pub async fn sleep_ms(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}

async fn fetch(url: &str, method: &str, body: Option<String>) -> Result<Response, String> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(&body));
        let headers = web_sys::Headers::new().map_err(js_error)?;
        headers.set("content-type", "application/json").map_err(js_error)?;
        init.set_headers(&headers);
    }
    let promise = window()?.fetch_with_str_and_init(url, &init);
    let response: Response = JsFuture::from(promise)
        .await
        .map_err(|e| format!("{url}: the server cannot be reached ({})", js_error(e)))?
        .dyn_into()
        .map_err(js_error)?;
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    let text = match response.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let detail = serde_json::from_str::<ErrorBody>(&text).map(|b| b.error).unwrap_or(text);
    Err(format!("{url}: HTTP {status}: {detail}"))
}

/// GETs a text file.
pub async fn get_text(url: &str) -> Result<String, String> {
    let response = fetch(url, "GET", None).await?;
    let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?;
    text.as_string().ok_or_else(|| format!("{url}: not text"))
}

/// GETs a binary file.
pub async fn get_bytes(url: &str) -> Result<Vec<u8>, String> {
    let response = fetch(url, "GET", None).await?;
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?).await.map_err(js_error)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// GETs JSON.
pub async fn get_json<R: DeserializeOwned>(url: &str) -> Result<R, String> {
    let text = get_text(url).await?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: unexpected answer: {e}"))
}

/// POSTs JSON and reads JSON back.
pub async fn post_json<T: Serialize, R: DeserializeOwned>(url: &str, body: &T) -> Result<R, String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let response = fetch(url, "POST", Some(body)).await?;
    let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?;
    let text = text.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| format!("{url}: unexpected answer: {e}"))
}

/// The contents of a file the user picked.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| format!("{}: {}", file.name(), js_error(e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// The `<input>` an event came from, if it came from one.
pub fn input_of(ev: &web_sys::Event) -> Option<web_sys::HtmlInputElement> {
    ev.target()?.dyn_into().ok()
}

/// Files chosen in an `<input type=file>`, read whole, with their names.
pub async fn chosen_files(input: &web_sys::HtmlInputElement) -> Result<Vec<(String, Vec<u8>)>, String> {
    let list = input.files().ok_or("no files chosen")?;
    let mut out = Vec::new();
    for i in 0..list.length() {
        if let Some(f) = list.get(i) {
            out.push((f.name(), read_file(&f).await?));
        }
    }
    Ok(out)
}

/// Puts text on the clipboard.
pub async fn copy_text(text: &str) -> Result<(), String> {
    let clipboard = window()?.navigator().clipboard();
    JsFuture::from(clipboard.write_text(text)).await.map(|_| ()).map_err(|e| format!("clipboard: {}", js_error(e)))
}

/// Offers `text` as a file download named `name`.
pub fn download(name: &str, text: &str) -> Result<(), String> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/plain");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).map_err(js_error)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(js_error)?;
    let document = window()?.document().ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a").map_err(js_error)?.dyn_into().map_err(|_| "not an anchor element")?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url).map_err(js_error)
}

/// Whether the browser offers WebGPU with an adapter; the adapter's description if so.
/// Asked before burn's wgpu setup, which cannot report a missing adapter without panicking.
pub async fn webgpu_adapter() -> Result<String, String> {
    let navigator = window()?.navigator();
    let gpu = js_sys::Reflect::get(&navigator, &JsValue::from_str("gpu")).map_err(js_error)?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let request: js_sys::Function = js_sys::Reflect::get(&gpu, &JsValue::from_str("requestAdapter"))
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "navigator.gpu.requestAdapter is not a function".to_string())?;
    let promise: Promise = request.call0(&gpu).map_err(js_error)?.dyn_into().map_err(js_error)?;
    let adapter = JsFuture::from(promise).await.map_err(|e| format!("WebGPU: {}", js_error(e)))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("WebGPU is present but offers no adapter".into());
    }
    let info = js_sys::Reflect::get(&adapter, &JsValue::from_str("info")).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| {
        js_sys::Reflect::get(&info, &JsValue::from_str(name)).ok().and_then(|v| v.as_string()).filter(|s| !s.is_empty())
    };
    let parts: Vec<String> = ["vendor", "architecture", "description"].iter().filter_map(|f| field(f)).collect();
    Ok(if parts.is_empty() { "adapter".into() } else { parts.join(" ") })
}

/// Registers the service worker that keeps the app and the default model for offline use.
pub fn register_service_worker() {
    let Some(w) = web_sys::window() else { return };
    let container = w.navigator().service_worker();
    let promise = container.register("sw.js");
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = JsFuture::from(promise).await {
            web_sys::console::warn_1(&format!("service worker not registered: {}", js_error(e)).into());
        }
    });
}
