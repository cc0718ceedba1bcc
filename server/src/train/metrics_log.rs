//! `RUN/metrics.jsonl`: one JSON object per line (a training window or an evaluation),
//! appended by the trainer and read back by `trm runs`.
//!
//! Each line goes out in a single `write` call, so a killed run leaves whole lines (at worst
//! none of its last one). A resumed run first drops the lines its killed predecessor logged
//! after the checkpoint it resumes from: those steps run again and are logged again, so the
//! log keeps one line per step and kind.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the log inside a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Why the metrics log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line is not a metrics record.
    #[error("{path}, line {line}: not a metrics record ({reason})")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A record could not be turned into JSON.
    #[error("cannot write a metrics line as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One line of the log as read back. Metrics are optional: the trainer writes `null` for a
/// mean over no halted row (NaN in JSON), and older or newer logs may lack a field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetricsRecord {
    /// `train` (means over the steps since the previous train line) or `eval`.
    pub kind: String,
    /// Optimizer steps taken when the line was written.
    pub step: u64,
    /// Learning rate at that step.
    pub lr: Option<f64>,
    /// Token accuracy.
    pub accuracy: Option<f64>,
    /// Share of mazes entirely right.
    pub exact_accuracy: Option<f64>,
    /// Token loss per row.
    pub lm_loss: Option<f64>,
    /// Q-halt loss per row.
    pub q_halt_loss: Option<f64>,
    /// Training throughput (0 on eval lines).
    pub examples_per_s: Option<f64>,
    /// Seconds since this process started training.
    pub elapsed_s: Option<f64>,
}

/// The run's log, open for appending.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `RUN/metrics.jsonl` for appending. With `resume_from = Some(step)` the lines of
    /// steps after `step` (and any line that is not whole JSON) are dropped first, by an atomic
    /// rewrite.
    pub fn open(run: &Path, resume_from: Option<u64>) -> Result<MetricsLog, MetricsError> {
        let path = run.join(METRICS_FILE);
        let io_err = |source| MetricsError::Io { path: path.clone(), source };
        if let Some(step) = resume_from {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let (kept, dropped) = lines_through(&text, step);
                    if dropped > 0 {
                        tracing::info!("{}: dropping {dropped} line(s) logged after step {step}, which runs again", path.display());
                        trm_shared::atomic::write_file(&path, kept.as_bytes()).map_err(io_err)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err)?;
        Ok(MetricsLog { path, file })
    }

    /// Appends one record as a line, in one `write` call.
    pub fn append(&mut self, record: &impl Serialize) -> Result<(), MetricsError> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|source| MetricsError::Io { path: self.path.clone(), source })
    }
}

/// The whole lines of `text` whose `step` is at most `step`, and how many lines were dropped.
fn lines_through(text: &str, step: u64) -> (String, usize) {
    let mut kept = String::with_capacity(text.len());
    let mut dropped = 0;
    for line in text.split_inclusive('\n') {
        let keep = line.ends_with('\n')
            && serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                .is_some_and(|s| s <= step);
        if keep {
            kept.push_str(line);
        } else if !line.trim().is_empty() {
            dropped += 1;
        }
    }
    (kept, dropped)
}

/// Reads a metrics log; a line that is not a record is an error naming it.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRecord>, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|source| MetricsError::Io { path: path.to_path_buf(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| MetricsError::Line { path: path.to_path_buf(), line: i + 1, reason: e.to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_drops_lines_after_the_checkpoint_and_torn_lines() {
        let run = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"kind":"train","step":50,"lr":0.1,"lm_loss":1.5}"#,
            r#"{"kind":"eval","step":60,"lr":0.1,"exact_accuracy":null}"#,
            r#"{"kind":"train","step":100,"lr":0.1}"#,
        ];
        // The killed run got half of a fourth line out.
        std::fs::write(run.path().join(METRICS_FILE), format!("{}\n{}\n{}\n{{\"kind\":\"tr", lines[0], lines[1], lines[2])).unwrap();
        let mut log = MetricsLog::open(run.path(), Some(60)).unwrap();
        log.append(&serde_json::json!({"kind": "train", "step": 100, "lr": 0.2})).unwrap();
        let back = read_metrics(&run.path().join(METRICS_FILE)).unwrap();
        let steps: Vec<(String, u64)> = back.iter().map(|r| (r.kind.clone(), r.step)).collect();
        assert_eq!(steps, [("train".into(), 50), ("eval".into(), 60), ("train".into(), 100)]);
        assert_eq!(back[0].lm_loss, Some(1.5));
        assert_eq!(back[1].exact_accuracy, None, "null (a NaN mean) reads as no value");
        assert_eq!(back[2].lr, Some(0.2), "the re-logged line, not the killed run's");
    }

    #[test]
    fn a_fresh_log_is_appended_to_and_garbage_is_named() {
        let run = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(run.path(), None).unwrap();
        log.append(&serde_json::json!({"kind": "eval", "step": 3})).unwrap();
        let path = run.path().join(METRICS_FILE);
        assert_eq!(read_metrics(&path).unwrap().len(), 1);
        std::fs::write(&path, "{\"kind\":\"eval\",\"step\":3}\nnot json\n").unwrap();
        let e = read_metrics(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = read_metrics(&run.path().join("missing.jsonl")).unwrap_err().to_string();
        assert!(e.contains("missing.jsonl"), "{e}");
    }
}
