//! Dynamic batching: concurrent predict requests are grouped into one forward batch.
//!
//! Handlers hand their mazes to a bounded queue ([`BatcherHandle::submit`]). One thread owns
//! the model and runs [`run_loop`]: it takes the first waiting request, then keeps taking
//! requests until the batch holds `max_batch` mazes or `wait` has passed since that first
//! request, runs the whole batch, and sends each request its own rows back. Requests that
//! queued while a batch was running join the next one at once. The model never runs on the
//! async runtime, and a full queue is answered 503 at once instead of growing memory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use trm_shared::api::{BatchInfo, BatcherStats};
use trm_shared::model::Predictions;

use super::error::ApiError;

/// How requests are grouped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most mazes per forward batch (a single larger request runs alone, in chunks of this).
    pub max_batch: usize,
    /// How long to wait for more requests after the first one of a batch.
    pub wait: Duration,
    /// Requests that may wait in the queue; beyond that the server answers 503.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_batch: 32, wait: Duration::from_millis(5), queue_capacity: 256 }
    }
}

/// One request's mazes, waiting for the model.
pub struct Job {
    /// Row-major tokens `[n, seq_len]`.
    pub tokens: Vec<u8>,
    /// Mazes in this job.
    pub n: usize,
    /// ACT steps this job wants.
    pub steps: usize,
    /// When it was queued.
    pub queued_at: Instant,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<JobOutput, String>>,
}

/// The answer to one [`Job`].
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// `[step][row * seq_len + cell]` for this job's rows, for steps `0..job.steps`.
    pub answers: Vec<Vec<u8>>,
    /// `[step][row]`: q_halt logits.
    pub q_halt: Vec<Vec<f32>>,
    /// The batch it ran in.
    pub batch: BatchInfo,
    /// Time between queueing and the batch starting.
    pub queued: Duration,
    /// Time the batch's forward passes took.
    pub compute: Duration,
}

/// The async side of the batcher: submits jobs and reads the counters.
#[derive(Clone)]
pub struct BatcherHandle {
    tx: SyncSender<Job>,
    stats: Arc<Mutex<BatcherStats>>,
}

/// A new queue: the handle for handlers, the receiver for [`run_loop`], and the shared counters.
pub fn channel(config: &BatchConfig) -> (BatcherHandle, Receiver<Job>, Arc<Mutex<BatcherStats>>) {
    let (tx, rx) = sync_channel(config.queue_capacity.max(1));
    let stats = Arc::new(Mutex::new(BatcherStats {
        max_batch: config.max_batch,
        wait_ms: config.wait.as_millis() as u64,
        ..BatcherStats::default()
    }));
    (BatcherHandle { tx, stats: stats.clone() }, rx, stats)
}

impl BatcherHandle {
    /// Queues `n` mazes and waits for their answers.
    pub async fn submit(&self, tokens: Vec<u8>, n: usize, steps: usize) -> Result<JobOutput, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { tokens, n, steps, queued_at: Instant::now(), reply };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::unavailable("the prediction queue is full; retry shortly"));
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::unavailable("the model worker has stopped")),
        }
        match answer.await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(ApiError::internal(format!("the model failed: {message}"))),
            Err(_) => Err(ApiError::internal("the model worker stopped before answering")),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BatcherStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Runs the model on batches of `rows` mazes of `tokens` for `steps` ACT steps, keeping the
/// answer after every step.
pub trait BatchRunner {
    /// Runs one batch.
    fn run(&mut self, tokens: &[u8], rows: usize, steps: usize) -> Result<Predictions, String>;
}

impl<F: FnMut(&[u8], usize, usize) -> Result<Predictions, String>> BatchRunner for F {
    fn run(&mut self, tokens: &[u8], rows: usize, steps: usize) -> Result<Predictions, String> {
        self(tokens, rows, steps)
    }
}

/// Serves jobs from `rx` until every handle is gone. Runs on the thread that owns the model.
pub fn run_loop(rx: &Receiver<Job>, config: &BatchConfig, stats: &Mutex<BatcherStats>, runner: &mut dyn BatchRunner) {
    let max_batch = config.max_batch.max(1);
    // A job that did not fit in the last batch; it opens the next one.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let deadline = Instant::now() + config.wait;
        let mut mazes = first.n;
        let mut batch = vec![first];
        while mazes < max_batch {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
            };
            if mazes + next.n > max_batch {
                carried = Some(next);
                break;
            }
            mazes += next.n;
            batch.push(next);
        }
        // Clients that gave up (timeout, closed connection) cost no compute.
        batch.retain(|job| !job.reply.is_closed());
        if !batch.is_empty() {
            run_batch(batch, stats, runner);
        }
    }
}

fn run_batch(batch: Vec<Job>, stats: &Mutex<BatcherStats>, runner: &mut dyn BatchRunner) {
    let rows: usize = batch.iter().map(|j| j.n).sum();
    let steps = batch.iter().map(|j| j.steps).max().unwrap_or(1);
    let tokens: Vec<u8> = batch.iter().flat_map(|j| j.tokens.iter().copied()).collect();
    let started = Instant::now();
    // A panic inside the model must not kill the worker: every later request would fail.
    let result = catch_unwind(AssertUnwindSafe(|| runner.run(&tokens, rows, steps)))
        .unwrap_or_else(|_| Err("the model panicked on this batch".to_string()));
    let compute = started.elapsed();
    let info = BatchInfo { mazes: rows, requests: batch.len() };
    {
        let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
        s.batches += 1;
        s.requests += batch.len() as u64;
        s.mazes += rows as u64;
        s.largest_batch = s.largest_batch.max(rows);
        s.most_requests_in_a_batch = s.most_requests_in_a_batch.max(batch.len());
        s.mean_batch_mazes = s.mazes as f64 / s.batches as f64;
    }
    let mut first_row = 0;
    for job in batch {
        let reply = match &result {
            Err(message) => Err(message.clone()),
            Ok(preds) => Ok(slice_rows(preds, first_row, job.n, job.steps, &info, started - job.queued_at, compute)),
        };
        first_row += job.n;
        // The client may have gone meanwhile; nothing to do then.
        let _ = job.reply.send(reply);
    }
}

/// The rows `first..first + n` of a batch's predictions, for the first `steps` steps.
fn slice_rows(
    preds: &Predictions,
    first: usize,
    n: usize,
    steps: usize,
    info: &BatchInfo,
    queued: Duration,
    compute: Duration,
) -> JobOutput {
    let seq = preds.seq_len;
    JobOutput {
        answers: preds.answers[..steps].iter().map(|a| a[first * seq..(first + n) * seq].to_vec()).collect(),
        q_halt: preds.q_halt[..steps].iter().map(|q| q[first..first + n].to_vec()).collect(),
        batch: info.clone(),
        queued,
        compute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in model: the answer of a row after step s is its tokens plus s + 1, q_halt the row's first token.
    fn fake(seq: usize, calls: &Mutex<Vec<usize>>) -> impl FnMut(&[u8], usize, usize) -> Result<Predictions, String> + '_ {
        move |tokens, rows, steps| {
            calls.lock().unwrap().push(rows);
            Ok(Predictions {
                n: rows,
                seq_len: seq,
                vocab_size: 6,
                answers: (0..steps).map(|s| tokens.iter().map(|t| t + s as u8 + 1).collect()).collect(),
                q_halt: (0..steps).map(|_| tokens.chunks(seq).map(|r| f32::from(r[0])).collect()).collect(),
                logits: None,
                stopped_early_at: vec![None; rows],
            })
        }
    }

    fn job(first_token: u8, n: usize, steps: usize) -> (Job, oneshot::Receiver<Result<JobOutput, String>>) {
        let (reply, rx) = oneshot::channel();
        let tokens = (0..n).flat_map(|k| [first_token + k as u8, 0]).collect();
        (Job { tokens, n, steps, queued_at: Instant::now(), reply }, rx)
    }

    #[test]
    fn waiting_requests_share_a_batch_and_get_their_own_rows_back() {
        let config = BatchConfig { max_batch: 4, wait: Duration::from_millis(1), queue_capacity: 16 };
        let (handle, rx, stats) = channel(&config);
        let mut answers = Vec::new();
        // 1 + 2 mazes fit in one batch of 4; the next 2 do not and open a second batch.
        for (first, n, steps) in [(10, 1, 2), (20, 2, 1), (30, 2, 3)] {
            let (j, answer) = job(first, n, steps);
            handle.tx.try_send(j).unwrap();
            answers.push(answer);
        }
        drop(handle);
        let calls = Mutex::new(Vec::new());
        run_loop(&rx, &config, &stats, &mut fake(2, &calls));
        assert_eq!(*calls.lock().unwrap(), vec![3, 2]);
        let outs: Vec<JobOutput> = answers.into_iter().map(|mut a| a.try_recv().unwrap().unwrap()).collect();
        assert_eq!(outs[0].batch, BatchInfo { mazes: 3, requests: 2 });
        assert_eq!(outs[0].answers, vec![vec![11, 1], vec![12, 2]]);
        assert_eq!(outs[1].answers, vec![vec![21, 1, 22, 1]]);
        assert_eq!(outs[1].q_halt, vec![vec![20.0, 21.0]]);
        assert_eq!(outs[2].batch, BatchInfo { mazes: 2, requests: 1 });
        assert_eq!(outs[2].answers.len(), 3);
        let s = stats.lock().unwrap().clone();
        assert_eq!((s.batches, s.requests, s.mazes, s.largest_batch, s.most_requests_in_a_batch), (2, 3, 5, 3, 2));
    }

    #[test]
    fn a_failing_or_panicking_model_answers_every_request_and_keeps_serving() {
        let config = BatchConfig { max_batch: 8, wait: Duration::ZERO, queue_capacity: 4 };
        let (handle, rx, stats) = channel(&config);
        let (a, mut answer_a) = job(1, 1, 1);
        handle.tx.try_send(a).unwrap();
        drop(handle);
        let mut panicking = |_: &[u8], _: usize, _: usize| -> Result<Predictions, String> { panic!("boom") };
        run_loop(&rx, &config, &stats, &mut panicking);
        assert!(answer_a.try_recv().unwrap().unwrap_err().contains("panicked"));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let config = BatchConfig { max_batch: 1, wait: Duration::ZERO, queue_capacity: 1 };
        let (handle, _rx, _stats) = channel(&config);
        let (j, _answer) = job(1, 1, 1);
        handle.tx.try_send(j).unwrap();
        let err = handle.submit(vec![1, 0], 1, 1).await.unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.message.contains("queue is full"));
    }
}
