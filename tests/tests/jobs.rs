//! `trm serve`'s jobs, auth, model registration and OpenAPI document, end to end: the real
//! server on an ephemeral port, tiny models and tiny datasets made in the test.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, TOKEN, config, tiny_model_named};
use trm_server::api::ServeConfig;
use trm_server::backend::BackendKind;
use trm_server::eval::{EvalSpec, run_eval};
use trm_shared::wire::jobs::{JobInfo, JobKind, JobStatus};
use trm_shared::wire::{ErrorBody, ModelInfo, ModelList, PredictResponse};
use trm_shared::dataset::{SplitData, write_dataset};
use trm_shared::generate::{GenerateConfig, generate_splits};

/// Side of the test mazes: small, so that every job is quick.
const SIDE: usize = 6;

/// Writes (once) a dataset `dir/data/tiny` of `SIDE`x`SIDE` mazes (8 train, 8 test); returns `dir/data`.
fn tiny_dataset(dir: &Path) -> PathBuf {
    let gen_cfg = GenerateConfig { rows: SIDE, cols: SIDE, min_moves: Some(4), seed: 3, ..GenerateConfig::default() };
    let splits = generate_splits(&gen_cfg, &[8, 8], &mut |_| {}).unwrap();
    let to_split = |m: &Vec<trm_shared::generate::GeneratedMaze>| {
        SplitData::from_examples(SIDE * SIDE, m.iter().map(|m| (m.puzzle.tokens(), m.label.tokens())).collect())
    };
    let root = dir.join("data");
    if root.join("tiny").is_dir() {
        return root;
    }
    write_dataset(&root.join("tiny"), &[("train", &to_split(&splits[0])), ("test", &to_split(&splits[1]))]).unwrap();
    root
}

/// A config with the tiny dataset and a model for it at `dir/tiny6.{safetensors,toml}`.
fn jobs_config(dir: &Path) -> ServeConfig {
    let mut cfg = config(dir);
    cfg.data_dirs = vec![tiny_dataset(dir)];
    tiny_model_named(dir, "tiny6", SIDE);
    cfg
}

/// A training request that runs long (many epochs) unless stopped.
fn long_training() -> String {
    let toml = format!(
        "global_batch_size = 4\nepochs = 1000\neval_interval = 1000\nlr = 1e-3\nlr_warmup_steps = 1\n\
         [arch]\nhidden_size = 16\nnum_heads = 2\nL_layers = 1\nH_cycles = 1\nL_cycles = 1\nhalt_max_steps = 2\n\
         puzzle_emb_ndim = 16\npuzzle_emb_len = 1\nforward_dtype = \"float32\"\n\
         [data]\nsize = {SIDE}\nmin_moves = 4\ntrain_count = 16\ntest_count = 4\n"
    );
    json!({ "config": toml }).to_string()
}

fn assert_error(answer: (u16, String), status: u16, needle: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "body: {body}");
    let error: ErrorBody = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not an error body ({e}): {body}"));
    assert!(error.error.contains(needle), "{:?} does not mention {needle:?}", error.error);
}

fn job(server: &Server, id: i64) -> JobInfo {
    let (status, body) = server.get(&format!("/api/jobs/{id}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Submits a job (202 and a Location header), answering its record.
fn submit(server: &Server, path: &str, body: &str) -> JobInfo {
    let (status, headers, text) = server.call("POST", path, Some(TOKEN), Some(body));
    assert_eq!(status, 202, "{text}");
    let job: JobInfo = serde_json::from_str(&text).unwrap();
    let location = headers.get("location").unwrap().to_str().unwrap();
    assert_eq!(location, format!("/api/jobs/{}", job.id));
    job
}

/// Polls until `done` holds for the job's record (at most two minutes).
fn wait_for(server: &Server, id: i64, what: &str, done: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let start = Instant::now();
    loop {
        let info = job(server, id);
        if done(&info) {
            return info;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "job {id} never {what}: {info:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn endpoints_that_start_work_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(jobs_config(dir.path()));
    let eval = json!({ "dataset": "tiny", "model": "x" }).to_string();
    let register = json!({ "name": "m", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml" }).to_string();
    for (method, path, body) in [
        ("POST", "/api/eval", Some(eval.as_str())),
        ("POST", "/api/train", Some("{}")),
        ("POST", "/api/models", Some(register.as_str())),
        ("DELETE", "/api/jobs/1", None),
        ("POST", "/api/jobs/1/resume", None),
    ] {
        let (status, headers, text) = server.call(method, path, None, body);
        assert_error((status, text), 401, "Authorization: Bearer");
        assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer", "{method} {path}");
        let (status, _, text) = server.call(method, path, Some("not-the-token"), body);
        assert_error((status, text), 401, "wrong bearer token");
    }
    // Nothing was started or registered.
    assert_eq!(server.get("/api/jobs"), (200, r#"{"jobs":[]}"#.to_string()));
    let models: ModelList = serde_json::from_str(&server.get("/api/models").1).unwrap();
    assert!(models.models.is_empty());
    // Reading and predicting stay open (503 here: no model, not 401).
    assert_eq!(server.get("/api/health").0, 200);
    assert_eq!(server.post("/api/predict", r#"{"mazes": ["S G"]}"#).0, 503);
    // With the token, the same requests are judged on their content.
    assert_error(server.post_authorized("/api/eval", &eval), 404, "no model \"x\"");
    assert_error(server.call("DELETE", "/api/jobs/1", Some(TOKEN), None).into_body(), 404, "no job 1");
}

#[test]
fn an_eval_job_runs_to_the_eval_metrics_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(jobs_config(dir.path()));
    let request = json!({ "dataset": "tiny", "split": "test", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml", "batch_size": 3 });
    let submitted = submit(&server, "/api/eval", &request.to_string());
    assert_eq!(submitted.kind, JobKind::Eval);

    // The event stream replays from the start and ends after the final status.
    let events = server.events(&format!("/api/jobs/{}/events", submitted.id));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"status"), "{names:?}");
    assert_eq!(events[0].1, json!({ "status": "running" }));
    assert_eq!(events.last().unwrap(), &("status".to_string(), json!({ "status": "succeeded" })));
    let progress: Vec<&Value> = events.iter().filter(|(n, _)| n == "progress").map(|(_, d)| d).collect();
    assert_eq!(progress.last().unwrap(), &&json!({ "done": 8, "total": 8, "unit": "mazes" }));
    let (_, result) = events.iter().find(|(n, _)| n == "result").expect("a result event");
    // A client that reconnects with Last-Event-ID gets only what followed.
    let path = format!("/api/jobs/{}/events", submitted.id);
    let all = server.events_after(&path, None);
    let ids: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>(), "ids are the events' seq");
    let before_last = ids[ids.len() - 2].to_string();
    assert_eq!(server.events_after(&path, Some(&before_last)), all[all.len() - 1..].to_vec());
    assert!(server.events_after(&path, Some(&ids.last().unwrap().to_string())).is_empty(), "ends at once, all seen");
    let bad = ureq::get(format!("{}{path}", server.base)).header("last-event-id", "seven").config().http_status_as_error(false).build().call().unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    let info = job(&server, submitted.id);
    assert_eq!(info.status, JobStatus::Succeeded);
    assert!(info.started_at.is_some() && info.finished_at >= info.started_at);
    assert_eq!(info.result.as_ref(), Some(result));
    assert_eq!(info.request["dataset"], "tiny");
    // The metrics are the eval command's, computed again here on the same files.
    let spec = EvalSpec {
        checkpoint: dir.path().join("tiny6.safetensors"),
        config: dir.path().join("tiny6.toml"),
        split_dir: dir.path().join("data/tiny/test"),
        batch_size: 8,
        steps: None,
        limit: None,
        backend: BackendKind::Cpu,
        workers: 1,
    };
    let direct = run_eval(&spec, &mut |_, _| {}, None).unwrap();
    // Three threads taking batches of 3 in turn score as one thread does, step by step.
    let one = run_eval(&EvalSpec { batch_size: 3, ..spec.clone() }, &mut |_, _| {}, None).unwrap();
    let mut seen = Vec::new();
    let three = run_eval(&EvalSpec { batch_size: 3, workers: 3, ..spec.clone() }, &mut |done, _| seen.push(done), None).unwrap();
    assert_eq!((three.per_step.clone(), three.halting.clone()), (one.per_step.clone(), one.halting.clone()));
    assert_eq!(seen, [3, 6, 8], "progress comes in the mazes' order");
    assert_eq!(result["count"], 8);
    assert_eq!(result["steps"], 2);
    assert_eq!(result["per_step"].as_array().unwrap().len(), 2);
    for key in ["exact_accuracy", "token_accuracy", "valid_shortest_accuracy"] {
        let expected = serde_json::to_value(&direct).unwrap()[key].clone();
        assert_eq!(result[key], expected, "{key}");
    }
    let listed: Value = serde_json::from_str(&server.get("/api/jobs").1).unwrap();
    assert_eq!(listed["jobs"][0]["id"], submitted.id);

    // Bad requests name the problem.
    let post = |body: Value| server.post_authorized("/api/eval", &body.to_string());
    assert_error(post(json!({ "dataset": "tiny", "checkpoint": "tiny6.safetensors" })), 422, "either `model`");
    assert_error(post(json!({ "dataset": "nope", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml" })), 404, "no dataset \"nope\"");
    assert_error(post(json!({ "dataset": "tiny", "split": "dev", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml" })), 404, "no split");
    assert_error(post(json!({ "dataset": "tiny", "checkpoint": "/etc/passwd", "config": "tiny6.toml" })), 403, "outside the model roots");
    assert_error(post(json!({ "dataset": "tiny", "model": "m", "steps": 0 })), 404, "no model");
    assert_error(post(json!({ "dataset": "tiny", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml", "batch_size": 0 })), 422, "batch_size");
    assert_error(post(json!({ "dataset": "tiny", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml", "colour": 1 })), 400, "unknown field `colour`");
    assert_error(server.get("/api/jobs/999"), 404, "no job 999");
    assert_error(server.get("/api/jobs/abc"), 400, "bad job id");
    // A finished job cannot be cancelled or resumed.
    assert_error(server.call("DELETE", &format!("/api/jobs/{}", submitted.id), Some(TOKEN), None).into_body(), 409, "not running");
    assert_error(server.post_authorized(&format!("/api/jobs/{}/resume", submitted.id), ""), 409, "cannot be resumed");
}

#[test]
fn a_training_job_is_cancelled_at_a_checkpoint_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(jobs_config(dir.path()));
    let submitted = submit(&server, "/api/train", &long_training());
    assert_eq!(submitted.kind, JobKind::Train);
    let running = wait_for(&server, submitted.id, "made progress", |j| j.progress.as_ref().is_some_and(|p| p.done >= 1));
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.progress.as_ref().unwrap().unit, "steps");
    // One training job per device set.
    assert_error(server.post_authorized("/api/train", &long_training()), 409, "one training job at a time");

    let (status, _, body) = server.call("DELETE", &format!("/api/jobs/{}", submitted.id), Some(TOKEN), None);
    assert_eq!(status, 202, "{body}");
    let events = server.events(&format!("/api/jobs/{}/events", submitted.id));
    assert!(events.iter().any(|(n, _)| n == "cancel_requested"));
    assert_eq!(events.last().unwrap(), &("status".to_string(), json!({ "status": "cancelled" })));
    let cancelled = job(&server, submitted.id);
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(cancelled.resumable, "{cancelled:?}");
    let steps = cancelled.result.as_ref().unwrap()["steps"].as_u64().unwrap();
    assert!(steps >= 1);
    // The checkpoint the trainer wrote when it stopped.
    let run_dir = PathBuf::from(cancelled.run_dir.as_ref().unwrap());
    let latest = std::fs::read_to_string(run_dir.join("latest")).unwrap();
    assert_eq!(latest.trim(), format!("step_{steps}"), "latest names the stopping step");

    // Resumed, it continues from that step.
    let resumed = submit(&server, &format!("/api/jobs/{}/resume", submitted.id), "");
    assert_eq!(resumed.id, submitted.id);
    wait_for(&server, submitted.id, "went past the checkpoint", |j| j.progress.as_ref().is_some_and(|p| p.done > steps));
    let (status, _, _) = server.call("DELETE", &format!("/api/jobs/{}", submitted.id), Some(TOKEN), None);
    assert_eq!(status, 202);
    let done = wait_for(&server, submitted.id, "stopped again", |j| j.status.is_final());
    assert_eq!(done.status, JobStatus::Cancelled);
    assert!(done.result.unwrap()["steps"].as_u64().unwrap() > steps);

    // Invalid configs are refused with the problem named.
    let post = |body: Value| server.post_authorized("/api/train", &body.to_string());
    assert_error(post(json!({ "config": "epochs = 10\neval_interval = 3\n[data]\nsize = 6\n" })), 422, "eval_interval (3) must divide epochs (10)");
    assert_error(post(json!({ "config": { "epochz": 1 } })), 422, "unknown field `epochz`");
    assert_error(post(json!({ "config": 5 })), 422, "TOML text or a JSON object");
    assert_error(post(json!({ "config": "[data]\ndir = \"/etc\"\n" })), 403, "outside the server's data directories");
}

#[test]
fn job_records_survive_a_restart_and_running_jobs_end_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(jobs_config(dir.path()));
    let eval = json!({ "dataset": "tiny", "checkpoint": "tiny6.safetensors", "config": "tiny6.toml" });
    let finished = submit(&server, "/api/eval", &eval.to_string());
    wait_for(&server, finished.id, "finished", |j| j.status == JobStatus::Succeeded);
    let training = submit(&server, "/api/train", &long_training());
    wait_for(&server, training.id, "made progress", |j| j.progress.as_ref().is_some_and(|p| p.done >= 1));
    // A graceful stop: the training run checkpoints and is marked interrupted.
    server.stop().unwrap();

    // A job left "running" by a crash (no graceful stop) is marked interrupted at start.
    let crashed = {
        let mut store = trm_server::jobs::store::Store::open(&dir.path().join("state/jobs.sqlite")).unwrap();
        let job = store.create(JobKind::Eval, &json!({ "dataset": "tiny" })).unwrap();
        store.set_status(job.id, JobStatus::Running, None).unwrap();
        job.id
    };

    let server = Server::start(jobs_config(dir.path()));
    let before = job(&server, finished.id);
    assert_eq!(before.status, JobStatus::Succeeded);
    assert_eq!(before.result.unwrap()["count"], 8);
    let interrupted = job(&server, training.id);
    assert_eq!(interrupted.status, JobStatus::Interrupted, "{interrupted:?}");
    assert!(interrupted.error.as_deref().unwrap().contains("the server stopped"));
    assert!(interrupted.resumable);
    let crash = job(&server, crashed);
    assert_eq!(crash.status, JobStatus::Interrupted);
    assert!(!crash.resumable);
    // Their event logs were kept, and end with the final status.
    let events = server.events(&format!("/api/jobs/{}/events", training.id));
    assert_eq!(events.last().unwrap(), &("status".to_string(), json!({ "status": "interrupted" })));
    assert!(events.iter().any(|(n, _)| n == "progress"));
    let listed: Value = serde_json::from_str(&server.get("/api/jobs").1).unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 3);
}

#[test]
fn event_streams_are_capped_and_free_their_place_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(dir.path());
    cfg.limits.max_event_streams = 1;
    let server = Server::start(cfg);
    let training = submit(&server, "/api/train", &long_training());
    let path = format!("/api/jobs/{}/events", training.id);
    let held = server.open_stream(&path);
    assert_eq!(held.status().as_u16(), 200);
    let (status, _, text) = server.call("GET", &path, None, None);
    assert_error((status, text), 503, "1 event streams are open");
    // Other endpoints still answer.
    assert_eq!(job(&server, training.id).id, training.id);
    drop(held);
    let start = Instant::now();
    let mut again = server.open_stream(&path);
    while again.status().as_u16() == 503 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        again = server.open_stream(&path);
    }
    assert_eq!(again.status().as_u16(), 200, "the closed stream's place is free again");
    drop(again);
    server.stop().unwrap();
}

#[test]
fn training_configs_beyond_the_servers_memory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(dir.path());
    cfg.limits.max_train_step_bytes = 16 << 20;
    let server = Server::start(cfg);
    let huge = long_training().replace("global_batch_size = 4", "global_batch_size = 16").replace("hidden_size = 16", "hidden_size = 1024");
    let (status, _, text) = server.call("POST", "/api/train", Some(TOKEN), Some(&huge));
    assert_error((status, text), 422, "lower global_batch_size");
    assert_eq!(server.get("/api/jobs"), (200, r#"{"jobs":[]}"#.to_string()), "nothing started");
    // The small one fits.
    let small = submit(&server, "/api/train", &long_training());
    assert_eq!(small.kind, JobKind::Train);
    server.stop().unwrap();
}

#[test]
fn registered_models_must_lie_under_the_roots_and_serve_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("models");
    std::fs::create_dir(&roots).unwrap();
    tiny_model_named(&roots, "small", SIDE);
    tiny_model_named(dir.path(), "outside", SIDE);
    let mut cfg = config(dir.path());
    cfg.model_roots = vec![roots.clone()];
    let server = Server::start(cfg.clone());
    let register = |name: &str, checkpoint: &str, config: &str| {
        server.post_authorized("/api/models", &json!({ "name": name, "checkpoint": checkpoint, "config": config }).to_string())
    };
    let outside = dir.path().join("outside.safetensors").display().to_string();
    assert_error(register("a", &outside, "small.toml"), 403, "outside the model roots");
    assert_error(register("a", "../outside.safetensors", "small.toml"), 403, "outside the model roots");
    assert_error(register("a", "small.safetensors", "../outside.toml"), 403, "outside the model roots");
    assert_error(register("a", "missing.safetensors", "small.toml"), 422, "does not exist");
    assert_error(register("a/b", "small.safetensors", "small.toml"), 422, "model name");
    assert_error(register("a", "small.toml", "small.toml"), 422, "loading the model a");

    let (status, body) = register("small", "small.safetensors", "small.toml");
    assert_eq!(status, 201, "{body}");
    let info: ModelInfo = serde_json::from_str(&body).unwrap();
    assert_eq!((info.name.as_str(), info.rows, info.cols), ("small", SIDE, SIDE));
    assert_error(register("small", "small.safetensors", "small.toml"), 409, "already served");

    let maze = trm_shared::maze::Grid::parse_lines("S     \n##### \n      \n #####\n      \n    G \n").unwrap().to_row_major();
    let (status, body) = server.post("/api/predict?model=small", &json!({ "mazes": [maze] }).to_string());
    assert_eq!(status, 200, "{body}");
    let answer: PredictResponse = serde_json::from_str(&body).unwrap();
    assert_eq!((answer.model.as_str(), answer.results.len()), ("small", 1));
    assert_error(server.post("/api/predict?model=nope", &json!({ "mazes": [maze] }).to_string()), 404, "there are: small");
    // The first registered model is the default when the server started without one.
    assert_eq!(server.post("/api/predict", &json!({ "mazes": [maze] }).to_string()).0, 200);
    server.stop().unwrap();

    // Registered models are served again after a restart.
    let server = Server::start(cfg);
    let models: ModelList = serde_json::from_str(&server.get("/api/models").1).unwrap();
    assert_eq!(models.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), vec!["small"]);
}

#[test]
fn the_openapi_document_lists_the_endpoints_and_docs_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path()));
    let (status, body) = server.get("/api/openapi.json");
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/health",
        "/api/models",
        "/api/predict",
        "/api/generate",
        "/api/datasets",
        "/api/datasets/{name}/{split}",
        "/api/eval",
        "/api/train",
        "/api/jobs",
        "/api/jobs/{id}",
        "/api/jobs/{id}/events",
        "/api/jobs/{id}/resume",
    ] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(paths["/api/train"]["post"]["security"].is_array(), "train is marked as needing the token");
    assert!(paths["/api/predict"]["post"].get("security").is_none(), "predict is open");
    assert!(doc["components"]["schemas"]["PredictRequest"].is_object());
    let (status, html) = server.get("/docs/");
    assert_eq!(status, 200);
    assert!(html.to_lowercase().contains("swagger"), "{html}");
}

/// `(status, headers, body)` to `(status, body)`.
trait IntoBody {
    fn into_body(self) -> (u16, String);
}

impl IntoBody for (u16, ureq::http::HeaderMap, String) {
    fn into_body(self) -> (u16, String) {
        (self.0, self.2)
    }
}

#[test]
fn a_second_server_on_the_same_state_dir_refuses_to_start() {
    use trm_server::jobs::JobManager;
    use trm_server::backend::devices::DeviceSet;
    let dir = tempfile::tempdir().unwrap();
    let open = || JobManager::open(dir.path(), BackendKind::Cpu, DeviceSet::default());
    let first = open().unwrap();
    let err = open().err().expect("the state directory is in use");
    assert!(err.to_string().contains("another server is using the state directory"), "{err}");
    drop(first);
    open().expect("the lock goes with the first server");
}
