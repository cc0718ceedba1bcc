//! Helpers for the HTTP tests: a real `trm serve` on an ephemeral port, a tiny random model,
//! and a client that never turns 4xx into errors.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;
use trm_server::api::{BatchConfig, Limits, ModelSource, ServeConfig, serve};
use trm_server::backend::BackendKind;
use trm_shared::model::{Cpu, RandomInit, Trm, TrmConfig};

/// The benchmark's dataset, committed next to the workspace.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// A server running in this process; stopped (gracefully) on drop.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Server {
    /// Starts the server on an ephemeral port.
    pub fn start(config: ServeConfig) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                serve(config, listener, async {
                    let _ = rx.await;
                })
                .await
                .map_err(|e| e.to_string())
            })
        });
        Server { base, shutdown: Some(tx), thread: Some(thread) }
    }

    /// Stops the server and returns how `serve` ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), String> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| "the server thread panicked".to_string())?,
            None => Ok(()),
        }
    }

    /// GET, answering (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let response = agent().get(format!("{}{path}", self.base)).call().unwrap();
        read(response)
    }

    /// Any request with an optional bearer token and body, answering (status, headers, body).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, ureq::http::HeaderMap, String) {
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.header("content-type", "application/json");
        let response = match body {
            Some(body) => agent().run(request.body(body.to_string()).unwrap()),
            None => agent().run(request.body(()).unwrap()),
        }
        .unwrap();
        let headers = response.headers().clone();
        let (status, body) = read(response);
        (status, headers, body)
    }

    /// POST with the test token, answering (status, body).
    pub fn post_authorized(&self, path: &str, body: &str) -> (u16, String) {
        let (status, _, body) = self.call("POST", path, Some(TOKEN), Some(body));
        (status, body)
    }

    /// Reads a server-sent event stream to its end: `(event name, data)` in order.
    pub fn events(&self, path: &str) -> Vec<(String, serde_json::Value)> {
        self.events_after(path, None).into_iter().map(|(_, name, data)| (name, data)).collect()
    }

    /// Reads a server-sent event stream to its end, sending `Last-Event-ID` when given:
    /// `(id, event name, data)` in order.
    pub fn events_after(&self, path: &str, last_event_id: Option<&str>) -> Vec<(u64, String, serde_json::Value)> {
        use std::io::BufRead;
        let mut request = agent().get(format!("{}{path}", self.base));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.call().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let reader = std::io::BufReader::new(response.body_mut().as_reader());
        let (mut events, mut name, mut id) = (Vec::new(), String::new(), 0);
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(n) = line.strip_prefix("id:") {
                id = n.trim().parse().unwrap();
            } else if let Some(data) = line.strip_prefix("data:") {
                events.push((id, std::mem::take(&mut name), serde_json::from_str(data.trim()).unwrap()));
            }
        }
        events
    }

    /// Opens an event stream and leaves it open: the response, its headers read.
    pub fn open_stream(&self, path: &str) -> ureq::http::Response<ureq::Body> {
        agent().get(format!("{}{path}", self.base)).call().unwrap()
    }

    /// POST with a given Content-Type (none for `None`), answering (status, body).
    pub fn post_as(&self, path: &str, content_type: Option<&str>, body: &str) -> (u16, String) {
        let mut request = ureq::http::Request::builder().method("POST").uri(format!("{}{path}", self.base));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        read(agent().run(request.body(body.to_string()).unwrap()).unwrap())
    }

    /// POST a JSON body (as text, so that malformed bodies can be sent), answering (status, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let response = agent()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        read(response)
    }

    /// GET, answering (status, Cache-Control, body).
    pub fn get_with_cache_control(&self, path: &str) -> (u16, Option<String>, String) {
        let response = agent().get(format!("{}{path}", self.base)).call().unwrap();
        let cache = response.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
        let (status, body) = read(response);
        (status, cache, body)
    }

    /// Sends `GET <target>` byte for byte (no client-side path normalisation), answering
    /// (status, whole response text).
    pub fn raw_get(&self, target: &str) -> (u16, String) {
        let addr = self.base.trim_start_matches("http://");
        self.raw_get_as(target, addr)
    }

    /// Sends `GET <target>` with the given `Host` header, answering (status, whole response text).
    pub fn raw_get_as(&self, target: &str, host: &str) -> (u16, String) {
        raw_get_at(&self.base, target, Some(host))
    }
}

/// Sends `GET <target>` to the server at `base` (`http://ADDR`) with a `Host` header (the
/// address when `None`), answering (status, whole response text).
pub fn raw_get_at(base: &str, target: &str, host: Option<&str>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", host.unwrap_or(addr)).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
    (status, body)
}

/// The bearer token of test servers.
pub const TOKEN: &str = "test-token";

/// A server config for tests: no model, the shared datasets, no web app, job records in
/// `dir/state`, model files under `dir`, token [`TOKEN`].
pub fn config(dir: &Path) -> ServeConfig {
    ServeConfig {
        token: TOKEN.into(),
        state_dir: dir.join("state"),
        model_roots: vec![dir.to_path_buf()],
        models: Vec::new(),
        no_model_reason: "none given in this test".into(),
        backend: BackendKind::Cpu,
        train_devices: Default::default(),
        data_dirs: vec![shared_data()],
        dist: dir.join("no-dist"),
        batch: BatchConfig::default(),
        limits: Limits::default(),
    }
}

/// The committed models (public/models), as `trm serve` finds them with no flags: `default`
/// (the size-general model) first.
pub fn committed_models() -> Vec<ModelSource> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/models");
    let models = trm_server::serving::registry::committed_models(&root, "default").unwrap();
    assert_eq!(models.first().map(|m| m.name.as_str()), Some("default"), "no public/models/default");
    models
}

/// Writes a small randomly initialised 30x30 model (safetensors + TOML config) into `dir`.
pub fn tiny_model(dir: &Path) -> ModelSource {
    tiny_model_named(dir, "tiny", 30)
}

/// Writes a small randomly initialised model for `side`x`side` mazes as `dir/NAME.safetensors`
/// and `dir/NAME.toml`.
pub fn tiny_model_named(dir: &Path, name: &str, side: usize) -> ModelSource {
    let cfg = TrmConfig { h_cycles: 1, ..TrmConfig::tiny(side * side, 1) };
    let model = Trm::<Cpu>::build(&cfg, &mut RandomInit::new(7), &Default::default()).unwrap();
    let checkpoint = dir.join(format!("{name}.safetensors"));
    let config = dir.join(format!("{name}.toml"));
    model.save_safetensors(&checkpoint).unwrap();
    std::fs::write(&config, cfg.to_toml_string().unwrap()).unwrap();
    ModelSource { name: name.into(), checkpoint, config }
}
