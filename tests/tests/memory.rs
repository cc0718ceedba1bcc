//! Every class of bad request, sent again and again: each is a 4xx, the server keeps
//! answering, and its memory stays bounded. A test binary of its own, so that the process's
//! resident memory (read from /proc) is the server's and this test's alone.

mod support;

use serde_json::json;
use support::{Server, committed_models, config};

/// Resident and peak resident memory of this process, in KiB (Linux); `None` elsewhere.
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// One of each class of bad request: what it is, the status it must get, and the one it got.
fn bad_requests(server: &Server) -> Vec<(&'static str, u16, u16)> {
    let open_row = |n: usize| " ".repeat(n);
    let side_65: Vec<String> = (0..65).map(|r| match r {
        0 => format!("S{}", open_row(64)),
        64 => format!("{}G", open_row(64)),
        _ => open_row(65),
    }).collect();
    let maze_30 = {
        let mut rows = vec![open_row(30); 30];
        rows[0].replace_range(0..1, "S");
        rows[29].replace_range(29..30, "G");
        rows
    };
    let max_steps = trm_server::api::Limits::default().max_local_steps;
    // Over the 128 KiB body limit these tests set (a client sending megabytes gets its pipe
    // closed by the 413 before it is done writing).
    let huge_body = format!(r#"{{"mazes": ["{}"]}}"#, "#".repeat(200 << 10));
    let huge_model = "[arch]\nhidden_size = 1000000\nnum_heads = 8\n";
    vec![
        ("body over the limit", 413, server.post("/api/predict", &huge_body).0),
        ("malformed JSON", 400, server.post("/api/predict", r#"{"mazes": [[["#).0),
        ("wrong content type", 415, server.post_as("/api/predict", Some("text/plain"), r#"{"mazes": []}"#).0),
        ("no content type", 415, server.post_as("/api/generate", None, "{}").0),
        ("unknown Host", 421, server.raw_get_as("/api/health", "rebind.example").0),
        ("maze over 64x64", 422, server.post("/api/predict", &json!({ "mazes": [side_65] }).to_string()).0),
        ("steps over the cap", 422, server.post("/api/predict", &json!({ "mazes": [maze_30], "steps": max_steps + 1 }).to_string()).0),
        (
            "answer over the cell cap",
            422,
            server.post("/api/predict", &json!({ "mazes": vec![maze_30.clone(); 64], "steps": max_steps, "return_steps": true }).to_string()).0,
        ),
        ("too many mazes", 422, server.post("/api/predict", &json!({ "mazes": vec![maze_30.clone(); 65] }).to_string()).0),
        ("generated side over 64", 422, server.post("/api/generate", &json!({ "size": 1000 }).to_string()).0),
        ("dataset offset past the end", 422, server.get("/api/datasets/maze-30x30-hard-1k/test?offset=4294967296&limit=1").0),
        ("training config too big", 422, server.post_authorized("/api/train", &json!({ "config": huge_model }).to_string()).0),
        ("events of no job", 404, server.get("/api/jobs/999999/events").0),
        ("model file outside the roots", 403, server.post_authorized("/api/models", &json!({ "name": "x", "checkpoint": "/etc/passwd", "config": "/etc/hostname" }).to_string()).0),
        ("no token", 401, server.post("/api/eval", &json!({ "dataset": "maze-30x30-hard-1k" }).to_string()).0),
        ("no such route", 404, server.get("/api/nothing-here").0),
    ]
}

#[test]
fn repeated_bad_requests_are_4xx_and_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.models = committed_models();
    cfg.limits = trm_server::api::Limits { max_body_bytes: 128 << 10, ..Default::default() };
    let server = Server::start(cfg);

    // The first round warms the allocator, the model thread and the connection pool.
    for (what, expected, status) in bad_requests(&server) {
        assert_eq!(status, expected, "{what}");
    }
    let before = rss_kib();
    const ROUNDS: usize = 100;
    for _ in 0..ROUNDS {
        for (what, expected, status) in bad_requests(&server) {
            assert_eq!(status, expected, "{what}");
        }
    }
    let after = rss_kib();
    // Still serving: a real answer after all that.
    let (status, body) = server.post("/api/predict", &json!({ "mazes": ["S # \n  # \n#  G"], "steps": 4 }).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get("/api/health").0, 200);

    if let (Some((rss0, _)), Some((rss1, peak))) = (before, after) {
        eprintln!("resident memory: {} MiB before, {} MiB after {ROUNDS} rounds, peak {} MiB", rss0 >> 10, rss1 >> 10, peak >> 10);
        // Each round sends about 400 KiB of bodies: kept, they would add 40 MiB.
        assert!(rss1 < rss0 + (16 << 10), "resident memory grew from {rss0} KiB to {rss1} KiB over {ROUNDS} rounds of bad requests");
    }
    server.stop().unwrap();
}
