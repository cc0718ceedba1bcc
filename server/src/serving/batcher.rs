//! Dynamic batching: concurrent predict requests are grouped into one forward batch.
//!
//! Handlers hand their mazes to a bounded queue ([`BatcherHandle::submit`]). One thread owns
//! the model and runs [`run_loop`]: it takes the first waiting request, then keeps taking
//! requests until the batch holds `max_batch` mazes or `wait` has passed since that first
//! request, runs the whole batch, and sends each request its own mazes back. Requests that
//! queued while a batch was running join the next one at once. The model never runs on the
//! async runtime, and a full queue is answered 503 at once instead of growing memory.
//!
//! Each maze travels with its own grid shape: a reference model's are all its one size (the
//! frame it sees), a size-general model's may differ, and its runner groups them by size.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use trm_shared::wire::{BatchInfo, BatcherStats};
use trm_shared::model::GridShape;

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

/// Why a job got no answer (the API answers each with its status, see `super::error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bounded queue is full.
    #[error("the prediction queue is full; retry shortly")]
    QueueFull,
    /// The model thread has ended.
    #[error("the model worker has stopped")]
    Stopped,
    /// The model failed (or panicked) on the batch.
    #[error("the model failed: {0}")]
    Model(String),
    /// The model thread dropped the job unanswered.
    #[error("the model worker stopped before answering")]
    Unanswered,
}

/// One request's mazes, waiting for the model.
pub struct PredictJob {
    /// Row-major tokens of every maze, one maze after the other.
    pub tokens: Vec<u8>,
    /// Each maze's grid, in order; their cells add up to `tokens.len()`.
    pub shapes: Vec<GridShape>,
    /// ACT steps: exactly this many for a reference model, at most this many for a
    /// size-general one (each maze stops where the model halts).
    pub steps: usize,
    /// Keep the answer after every step (`return_steps`), not only the last.
    pub keep_steps: bool,
    /// When it was queued.
    pub queued_at: Instant,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<PredictOutput, String>>,
}

impl PredictJob {
    /// Mazes in this job.
    pub fn n(&self) -> usize {
        self.shapes.len()
    }
}

/// What the model gave for one maze.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MazeOutput {
    /// The answer (row-major tokens of the maze's grid) after each kept step: steps
    /// `1..=steps_run` when the job keeps steps, else only the last.
    pub answers: Vec<Vec<u8>>,
    /// q_halt after the same steps.
    pub q_halt: Vec<f32>,
    /// ACT steps run for this maze; the last answer is the one after this step.
    pub steps_run: usize,
    /// The step at which the model halted, for a model that halts on its own.
    pub halted_at: Option<usize>,
}

/// The answer to one [`PredictJob`].
#[derive(Debug, Clone)]
pub struct PredictOutput {
    /// One per maze of the job, in order.
    pub mazes: Vec<MazeOutput>,
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
    tx: SyncSender<PredictJob>,
    stats: Arc<Mutex<BatcherStats>>,
}

/// A new queue: the handle for handlers, the receiver for [`run_loop`], and the shared counters.
pub fn channel(config: &BatchConfig) -> (BatcherHandle, Receiver<PredictJob>, Arc<Mutex<BatcherStats>>) {
    let (tx, rx) = sync_channel(config.queue_capacity.max(1));
    let stats = Arc::new(Mutex::new(BatcherStats {
        max_batch: config.max_batch,
        wait_ms: config.wait.as_millis() as u64,
        ..BatcherStats::default()
    }));
    (BatcherHandle { tx, stats: stats.clone() }, rx, stats)
}

impl BatcherHandle {
    /// Queues mazes of `shapes` (their row-major `tokens` one after the other) for at most
    /// `steps` ACT steps and waits for their answers.
    pub async fn submit(&self, tokens: Vec<u8>, shapes: Vec<GridShape>, steps: usize, keep_steps: bool) -> Result<PredictOutput, BatchError> {
        let (reply, answer) = oneshot::channel();
        let job = PredictJob { tokens, shapes, steps, keep_steps, queued_at: Instant::now(), reply };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(BatchError::QueueFull),
            Err(TrySendError::Disconnected(_)) => return Err(BatchError::Stopped),
        }
        match answer.await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(BatchError::Model(message)),
            Err(_) => Err(BatchError::Unanswered),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BatcherStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// One maze of a batch, as the model runner sees it.
#[derive(Debug, Clone, Copy)]
pub struct MazeRef<'a> {
    /// Its row-major tokens.
    pub tokens: &'a [u8],
    /// Its grid.
    pub shape: GridShape,
    /// Its job's steps.
    pub steps: usize,
    /// Whether its job keeps every step's answer.
    pub keep_steps: bool,
}

/// Runs the model on a batch of mazes, one [`MazeOutput`] per maze in order. `gone()` says
/// that every client of the batch has gone: a runner may stop early then (nobody reads the
/// answers).
pub trait BatchRunner {
    /// Runs one batch.
    fn run(&mut self, mazes: &[MazeRef<'_>], gone: &dyn Fn() -> bool) -> Result<Vec<MazeOutput>, String>;
}

impl<F: FnMut(&[MazeRef<'_>], &dyn Fn() -> bool) -> Result<Vec<MazeOutput>, String>> BatchRunner for F {
    fn run(&mut self, mazes: &[MazeRef<'_>], gone: &dyn Fn() -> bool) -> Result<Vec<MazeOutput>, String> {
        self(mazes, gone)
    }
}

/// Serves jobs from `rx` until every handle is gone. Runs on the thread that owns the model.
pub fn run_loop(rx: &Receiver<PredictJob>, config: &BatchConfig, stats: &Mutex<BatcherStats>, runner: &mut dyn BatchRunner) {
    let max_batch = config.max_batch.max(1);
    // A job that did not fit in the last batch; it opens the next one.
    let mut carried: Option<PredictJob> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let deadline = Instant::now() + config.wait;
        let mut mazes = first.n();
        let mut batch = vec![first];
        while mazes < max_batch {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
            };
            if mazes + next.n() > max_batch {
                carried = Some(next);
                break;
            }
            mazes += next.n();
            batch.push(next);
        }
        // Clients that gave up (timeout, closed connection) cost no compute.
        batch.retain(|job| !job.reply.is_closed());
        if !batch.is_empty() {
            run_batch(batch, stats, runner);
        }
    }
}

fn run_batch(batch: Vec<PredictJob>, stats: &Mutex<BatcherStats>, runner: &mut dyn BatchRunner) {
    let rows: usize = batch.iter().map(PredictJob::n).sum();
    let mut mazes = Vec::with_capacity(rows);
    for job in &batch {
        let mut offset = 0;
        for &shape in &job.shapes {
            let tokens = job.tokens.get(offset..offset + shape.cells()).unwrap_or(&[]);
            mazes.push(MazeRef { tokens, shape, steps: job.steps, keep_steps: job.keep_steps });
            offset += shape.cells();
        }
    }
    let gone = || batch.iter().all(|job| job.reply.is_closed());
    let started = Instant::now();
    // A panic inside the model must not kill the worker: every later request would fail.
    let result = catch_unwind(AssertUnwindSafe(|| runner.run(&mazes, &gone)))
        .unwrap_or_else(|_| Err("the model panicked on this batch".to_string()))
        .and_then(|outputs| {
            if outputs.len() == rows {
                Ok(outputs)
            } else {
                Err(format!("the model answered {} of {rows} mazes", outputs.len()))
            }
        });
    drop(mazes);
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
    let mut outputs = result.map(Vec::into_iter);
    for job in batch {
        let reply = match &mut outputs {
            Err(message) => Err(message.clone()),
            Ok(rest) => Ok(PredictOutput {
                mazes: rest.by_ref().take(job.n()).collect(),
                batch: info.clone(),
                queued: started - job.queued_at,
                compute,
            }),
        };
        // The client may have gone meanwhile; nothing to do then.
        let _ = job.reply.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in model: the answer of a maze after step s is its tokens plus s, q_halt its
    /// first token; it records the mazes of every batch.
    fn fake(calls: &Mutex<Vec<usize>>) -> impl FnMut(&[MazeRef<'_>], &dyn Fn() -> bool) -> Result<Vec<MazeOutput>, String> + '_ {
        move |mazes, _gone| {
            calls.lock().unwrap().push(mazes.len());
            Ok(mazes
                .iter()
                .map(|m| {
                    let kept: Vec<usize> = if m.keep_steps { (1..=m.steps).collect() } else { vec![m.steps] };
                    MazeOutput {
                        answers: kept.iter().map(|&s| m.tokens.iter().map(|t| t + s as u8).collect()).collect(),
                        q_halt: kept.iter().map(|_| f32::from(m.tokens[0])).collect(),
                        steps_run: m.steps,
                        halted_at: None,
                    }
                })
                .collect())
        }
    }

    const TWO: GridShape = GridShape { rows: 1, cols: 2 };

    fn job(first_token: u8, n: usize, steps: usize) -> (PredictJob, oneshot::Receiver<Result<PredictOutput, String>>) {
        let (reply, rx) = oneshot::channel();
        let tokens = (0..n).flat_map(|k| [first_token + k as u8, 0]).collect();
        (PredictJob { tokens, shapes: vec![TWO; n], steps, keep_steps: true, queued_at: Instant::now(), reply }, rx)
    }

    fn answers(out: &PredictOutput) -> Vec<Vec<Vec<u8>>> {
        out.mazes.iter().map(|m| m.answers.clone()).collect()
    }

    #[test]
    fn waiting_requests_share_a_batch_and_get_their_own_rows_back() {
        let config = BatchConfig { max_batch: 4, wait: Duration::from_millis(1), queue_capacity: 16 };
        let (handle, rx, stats) = channel(&config);
        let mut receivers = Vec::new();
        // 1 + 2 mazes fit in one batch of 4; the next 2 do not and open a second batch.
        for (first, n, steps) in [(10, 1, 2), (20, 2, 1), (30, 2, 3)] {
            let (j, answer) = job(first, n, steps);
            handle.tx.try_send(j).unwrap();
            receivers.push(answer);
        }
        drop(handle);
        let calls = Mutex::new(Vec::new());
        run_loop(&rx, &config, &stats, &mut fake(&calls));
        assert_eq!(*calls.lock().unwrap(), vec![3, 2]);
        let outs: Vec<PredictOutput> = receivers.into_iter().map(|mut a| a.try_recv().unwrap().unwrap()).collect();
        assert_eq!(outs[0].batch, BatchInfo { mazes: 3, requests: 2 });
        assert_eq!(answers(&outs[0]), vec![vec![vec![11, 1], vec![12, 2]]]);
        assert_eq!(answers(&outs[1]), vec![vec![vec![21, 1]], vec![vec![22, 1]]]);
        assert_eq!(outs[1].mazes.iter().map(|m| m.q_halt.clone()).collect::<Vec<_>>(), vec![vec![20.0], vec![21.0]]);
        assert_eq!(outs[2].batch, BatchInfo { mazes: 2, requests: 1 });
        assert!(outs[2].mazes.iter().all(|m| m.answers.len() == 3 && m.steps_run == 3));
        let s = stats.lock().unwrap().clone();
        assert_eq!((s.batches, s.requests, s.mazes, s.largest_batch, s.most_requests_in_a_batch), (2, 3, 5, 3, 2));
    }

    #[test]
    fn mazes_of_several_sizes_reach_the_runner_whole_and_in_order() {
        let config = BatchConfig { max_batch: 8, wait: Duration::ZERO, queue_capacity: 4 };
        let (handle, rx, stats) = channel(&config);
        let (reply, mut answer) = oneshot::channel();
        let shapes = vec![GridShape { rows: 2, cols: 3 }, TWO, GridShape { rows: 3, cols: 1 }];
        let tokens: Vec<u8> = (1..=11).collect();
        let job = PredictJob { tokens, shapes: shapes.clone(), steps: 4, keep_steps: false, queued_at: Instant::now(), reply };
        handle.tx.try_send(job).unwrap();
        drop(handle);
        let mut seen = Vec::new();
        let mut runner = |mazes: &[MazeRef<'_>], _: &dyn Fn() -> bool| -> Result<Vec<MazeOutput>, String> {
            seen = mazes.iter().map(|m| (m.shape, m.tokens.to_vec(), m.steps, m.keep_steps)).collect();
            Ok(mazes.iter().map(|m| MazeOutput { answers: vec![m.tokens.to_vec()], q_halt: vec![0.0], steps_run: 1, halted_at: Some(1) }).collect())
        };
        run_loop(&rx, &config, &stats, &mut runner);
        let expected = vec![
            (shapes[0], vec![1, 2, 3, 4, 5, 6], 4, false),
            (shapes[1], vec![7, 8], 4, false),
            (shapes[2], vec![9, 10, 11], 4, false),
        ];
        assert_eq!(seen, expected);
        let out = answer.try_recv().unwrap().unwrap();
        assert_eq!(out.mazes.iter().map(|m| m.answers[0].len()).collect::<Vec<_>>(), vec![6, 2, 3]);
        assert!(out.mazes.iter().all(|m| m.halted_at == Some(1)));
    }

    #[test]
    fn a_failing_or_panicking_model_answers_every_request_and_keeps_serving() {
        let config = BatchConfig { max_batch: 8, wait: Duration::ZERO, queue_capacity: 4 };
        let (handle, rx, stats) = channel(&config);
        let (a, mut answer_a) = job(1, 1, 1);
        handle.tx.try_send(a).unwrap();
        drop(handle);
        let mut panicking = |_: &[MazeRef<'_>], _: &dyn Fn() -> bool| -> Result<Vec<MazeOutput>, String> { panic!("boom") };
        run_loop(&rx, &config, &stats, &mut panicking);
        assert!(answer_a.try_recv().unwrap().unwrap_err().contains("panicked"));
    }

    #[test]
    fn the_runner_learns_when_every_client_of_its_batch_has_gone() {
        let config = BatchConfig { max_batch: 8, wait: Duration::ZERO, queue_capacity: 4 };
        let (handle, rx, stats) = channel(&config);
        let (a, answer_a) = job(1, 1, 1);
        let (b, answer_b) = job(2, 1, 1);
        handle.tx.try_send(a).unwrap();
        handle.tx.try_send(b).unwrap();
        drop(handle);
        let mut answer_a = Some(answer_a);
        let mut answer_b = Some(answer_b);
        let mut seen = Vec::new();
        let mut runner = |mazes: &[MazeRef<'_>], gone: &dyn Fn() -> bool| -> Result<Vec<MazeOutput>, String> {
            seen.push(gone());
            drop(answer_a.take());
            seen.push(gone());
            drop(answer_b.take());
            seen.push(gone());
            Ok(vec![MazeOutput::default(); mazes.len()])
        };
        run_loop(&rx, &config, &stats, &mut runner);
        assert_eq!(seen, vec![false, false, true]);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let config = BatchConfig { max_batch: 1, wait: Duration::ZERO, queue_capacity: 1 };
        let (handle, _rx, _stats) = channel(&config);
        let (j, _answer) = job(1, 1, 1);
        handle.tx.try_send(j).unwrap();
        let err = handle.submit(vec![1, 0], vec![TWO], 1, false).await.unwrap_err();
        assert_eq!(err, BatchError::QueueFull);
    }
}
