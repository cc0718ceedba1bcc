//! A load generator for `trm serve`: many concurrent predict requests on one URL, with
//! throughput, latency percentiles, the batch sizes the server formed, and errors.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use trm_shared::wire::{BatcherStats, Health, PredictResponse};

/// What a load run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    /// Requests sent.
    pub requests: usize,
    /// Requests answered 200 with a well-formed body.
    pub ok: usize,
    /// Up to 5 error messages (status and body, or transport error), with their count.
    pub errors: Vec<String>,
    /// Requests that failed.
    pub error_count: usize,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Median latency of successful requests.
    pub p50: Duration,
    /// 99th percentile latency of successful requests.
    pub p99: Duration,
    /// Mean mazes per forward batch over the run, from the server's counters.
    pub mean_batch_mazes: f64,
    /// Batches the server ran during the run.
    pub batches: u64,
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The server's health endpoint did not answer as expected.
    #[error("{url}/api/health: {message}")]
    Health { url: String, message: String },
}

/// Sends every body of `bodies` as `POST {url}/api/predict`, `concurrency` at a time.
pub fn run_load(url: &str, bodies: &[String], concurrency: usize) -> Result<LoadReport, LoadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let before = batcher_stats(&agent, url)?;
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(bodies.len()));
    let errors = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, bodies.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    match predict(&agent, url, body) {
                        Ok(()) => latencies.lock().unwrap_or_else(|e| e.into_inner()).push(t.elapsed()),
                        Err(e) => errors.lock().unwrap_or_else(|e| e.into_inner()).push(e),
                    }
                }
            });
        }
    });
    let wall = started.elapsed();
    let after = batcher_stats(&agent, url)?;
    let mut latencies = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
    latencies.sort();
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    let batches = after.batches.saturating_sub(before.batches);
    let mazes = after.mazes.saturating_sub(before.mazes);
    Ok(LoadReport {
        requests: bodies.len(),
        ok: latencies.len(),
        error_count: errors.len(),
        errors: errors.into_iter().take(5).collect(),
        wall,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        mean_batch_mazes: if batches == 0 { 0.0 } else { mazes as f64 / batches as f64 },
        batches,
    })
}

/// The nearest-rank percentile of sorted `values`; zero when empty.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn predict(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), String> {
    let mut response = agent
        .post(format!("{url}/api/predict"))
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(64 << 20).read_to_string().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str::<PredictResponse>(&text).map(|_| ()).map_err(|e| format!("malformed answer: {e}"))
}

/// The maze size (rows, cols) of the model a running server serves by default.
pub fn served_model_size(url: &str) -> Result<(usize, usize), LoadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let model = health(&agent, url)?.model.ok_or_else(|| no_model(url))?;
    Ok((model.rows, model.cols))
}

fn batcher_stats(agent: &ureq::Agent, url: &str) -> Result<BatcherStats, LoadError> {
    health(agent, url)?.batcher.ok_or_else(|| no_model(url))
}

fn no_model(url: &str) -> LoadError {
    LoadError::Health { url: url.to_string(), message: "the server has no model loaded".into() }
}

fn health(agent: &ureq::Agent, url: &str) -> Result<Health, LoadError> {
    let fail = |message: String| LoadError::Health { url: url.to_string(), message };
    let mut response = agent.get(format!("{url}/api/health")).call().map_err(|e| fail(e.to_string()))?;
    let text = response.body_mut().read_to_string().map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(format!("{e}: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
