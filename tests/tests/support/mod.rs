//! Helpers for the HTTP tests: a real `trm serve` on an ephemeral port, a tiny random model,
//! and a client that never turns 4xx into errors.

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
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(stream, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, text)
    }
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

/// A server config for tests: no model, the shared datasets, no web app.
pub fn config(dir: &Path) -> ServeConfig {
    ServeConfig {
        model: None,
        no_model_reason: "none given in this test".into(),
        backend: BackendKind::Cpu,
        data_dirs: vec![shared_data()],
        dist: dir.join("no-dist"),
        batch: BatchConfig::default(),
        limits: Limits::default(),
    }
}

/// Writes a small randomly initialised 30x30 model (safetensors + TOML config) into `dir`.
pub fn tiny_model(dir: &Path) -> ModelSource {
    let cfg = TrmConfig {
        hidden_size: 16,
        num_heads: 2,
        l_layers: 1,
        h_cycles: 1,
        l_cycles: 1,
        halt_max_steps: 2,
        puzzle_emb_ndim: 16,
        puzzle_emb_len: 1,
        forward_dtype: "float32".into(),
        seq_len: Some(900),
        vocab_size: Some(6),
        num_puzzle_identifiers: Some(1),
        ..TrmConfig::default()
    };
    let model = Trm::<Cpu>::build(&cfg, &mut RandomInit::new(7), &Default::default()).unwrap();
    let checkpoint = dir.join("tiny.safetensors");
    let config = dir.join("tiny.toml");
    model.save_safetensors(&checkpoint).unwrap();
    std::fs::write(&config, cfg.to_toml_string().unwrap()).unwrap();
    ModelSource { name: "tiny".into(), checkpoint, config }
}
