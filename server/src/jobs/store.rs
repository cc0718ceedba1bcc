//! Job records, their event logs and the registered models, in an SQLite file, so that they
//! survive a restart of the server.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, params};
use trm_shared::wire::jobs::{JobEvent, JobInfo, JobKind, JobProgress, JobStatus};

/// A failure of the job database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("job database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored JSON column does not parse (the file was edited or is from another version).
    #[error("job database: a stored value is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored kind or status is not one this version knows.
    #[error("job database: unknown {what} {value:?}")]
    Unknown {
        /// `kind` or `status`.
        what: &'static str,
        /// The stored text.
        value: String,
    },
}

/// Events kept per job: a training run logs a metrics line every `log_interval` steps and
/// progress often; beyond this the oldest of those are dropped.
pub const MAX_EVENTS_PER_JOB: i64 = 20_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    progress TEXT,
    result TEXT,
    error TEXT,
    run_dir TEXT
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    time INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// A model registered through `POST /api/models`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredModel {
    /// Its name.
    pub name: String,
    /// Canonical checkpoint path.
    pub checkpoint: String,
    /// Canonical config path.
    pub config: String,
}

/// The database. Not `Sync`: the manager keeps it behind a mutex.
pub struct Store {
    conn: Connection,
}

/// Seconds since the Unix epoch (SQLite integers are i64).
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn time_of(t: i64) -> u64 {
    t.max(0) as u64
}

fn kind_str(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Eval => "eval",
        JobKind::Train => "train",
    }
}

fn parse_kind(s: String) -> Result<JobKind, StoreError> {
    match s.as_str() {
        "eval" => Ok(JobKind::Eval),
        "train" => Ok(JobKind::Train),
        _ => Err(StoreError::Unknown { what: "kind", value: s }),
    }
}

fn parse_status(s: String) -> Result<JobStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|_| StoreError::Unknown { what: "status", value: s })
}

fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>, StoreError> {
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

const JOB_COLUMNS: &str = "id, kind, status, request, created_at, started_at, finished_at, progress, result, error, run_dir";

fn job_from_row(row: &Row<'_>) -> Result<JobInfo, StoreError> {
    let run_dir: Option<String> = row.get(10)?;
    let kind = parse_kind(row.get(1)?)?;
    let status = parse_status(row.get(2)?)?;
    // A training job can continue when it stopped early and its run has a checkpoint.
    let resumable = kind == JobKind::Train
        && matches!(status, JobStatus::Interrupted | JobStatus::Cancelled | JobStatus::Failed)
        && run_dir.as_ref().is_some_and(|d| Path::new(d).join("latest").is_file());
    Ok(JobInfo {
        id: row.get(0)?,
        kind,
        status,
        request: serde_json::from_str(&row.get::<_, String>(3)?)?,
        created_at: time_of(row.get(4)?),
        started_at: row.get::<_, Option<i64>>(5)?.map(time_of),
        finished_at: row.get::<_, Option<i64>>(6)?.map(time_of),
        progress: opt_json::<JobProgress>(row.get(7)?)?,
        result: opt_json(row.get(8)?)?,
        error: row.get(9)?,
        run_dir,
        resumable,
    })
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        // WAL: readers never wait for the writer; NORMAL sync is safe with WAL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Marks every job that was queued or running as interrupted (the previous server ended
    /// while they ran); returns their ids.
    pub fn interrupt_unfinished(&mut self) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare("SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY id")?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for &id in &ids {
            self.set_status(id, JobStatus::Interrupted, Some("the server stopped while the job ran"))?;
        }
        Ok(ids)
    }

    /// Records a new queued job.
    pub fn create(&mut self, kind: JobKind, request: &serde_json::Value) -> Result<JobInfo, StoreError> {
        self.conn.execute(
            "INSERT INTO jobs (kind, status, request, created_at) VALUES (?1, 'queued', ?2, ?3)",
            params![kind_str(kind), request.to_string(), now()],
        )?;
        let id = self.conn.last_insert_rowid();
        self.get(id)?.ok_or(StoreError::Sql(rusqlite::Error::QueryReturnedNoRows))
    }

    /// One job.
    pub fn get(&self, id: i64) -> Result<Option<JobInfo>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?;
        let row = stmt.query_row([id], |r| Ok(job_from_row(r))).optional()?;
        row.transpose()
    }

    /// The newest `limit` jobs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<JobInfo>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit as i64], |r| Ok(job_from_row(r)))?;
        rows.map(|r| r?).collect()
    }

    /// Sets the status; running sets `started_at` (and clears the end), a final status sets
    /// `finished_at`. `error` replaces the error text (cleared when `None`).
    pub fn set_status(&mut self, id: i64, status: JobStatus, error: Option<&str>) -> Result<(), StoreError> {
        let t = now();
        if status == JobStatus::Running {
            self.conn.execute(
                "UPDATE jobs SET status = ?2, started_at = ?3, finished_at = NULL, error = NULL WHERE id = ?1",
                params![id, status.as_str(), t],
            )?;
        } else {
            let finished = status.is_final().then_some(t);
            self.conn.execute(
                "UPDATE jobs SET status = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
                params![id, status.as_str(), finished, error],
            )?;
        }
        Ok(())
    }

    /// Records progress.
    pub fn set_progress(&mut self, id: i64, progress: &JobProgress) -> Result<(), StoreError> {
        self.conn.execute("UPDATE jobs SET progress = ?2 WHERE id = ?1", params![id, serde_json::to_string(progress)?])?;
        Ok(())
    }

    /// Records the outcome.
    pub fn set_result(&mut self, id: i64, result: &serde_json::Value) -> Result<(), StoreError> {
        self.conn.execute("UPDATE jobs SET result = ?2 WHERE id = ?1", params![id, result.to_string()])?;
        Ok(())
    }

    /// Records a training job's run directory.
    pub fn set_run_dir(&mut self, id: i64, dir: &Path) -> Result<(), StoreError> {
        self.conn.execute("UPDATE jobs SET run_dir = ?2 WHERE id = ?1", params![id, dir.display().to_string()])?;
        Ok(())
    }

    /// Appends an event to a job's log and returns it.
    pub fn append_event(&mut self, id: i64, kind: &str, data: &serde_json::Value) -> Result<JobEvent, StoreError> {
        let tx = self.conn.transaction()?;
        let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?1", [id], |r| r.get(0))?;
        let time = now();
        tx.execute(
            "INSERT INTO job_events (job_id, seq, kind, time, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, seq, kind, time, data.to_string()],
        )?;
        // The log is bounded: past MAX_EVENTS_PER_JOB, the oldest progress and metrics lines
        // go; status changes, results and errors stay.
        if seq > MAX_EVENTS_PER_JOB {
            tx.execute(
                "DELETE FROM job_events WHERE job_id = ?1 AND seq <= ?2 AND kind IN ('progress', 'metrics')",
                params![id, seq - MAX_EVENTS_PER_JOB],
            )?;
        }
        tx.commit()?;
        Ok(JobEvent { seq: seq as u64, kind: kind.to_string(), time: time_of(time), data: data.clone() })
    }

    /// At most `limit` of a job's events after `seq`, in order.
    pub fn events_after(&self, id: i64, seq: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, kind, time, data FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?;
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![id, seq, limit.min(i64::MAX as usize) as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
        })?;
        rows.map(|r| {
            let (seq, kind, time, data) = r?;
            Ok(JobEvent { seq: seq as u64, kind, time: time_of(time), data: serde_json::from_str(&data)? })
        })
        .collect()
    }

    /// Records a registered model (replacing one of the same name).
    pub fn put_model(&mut self, model: &StoredModel) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO models (name, checkpoint, config, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![model.name, model.checkpoint, model.config, now()],
        )?;
        Ok(())
    }

    /// The registered models, oldest first.
    pub fn models(&self) -> Result<Vec<StoredModel>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, checkpoint, config FROM models ORDER BY created_at, name")?;
        let rows = stmt.query_map([], |r| Ok(StoredModel { name: r.get(0)?, checkpoint: r.get(1)?, config: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_events_and_models_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite");
        let mut store = Store::open(&path).unwrap();
        let job = store.create(JobKind::Eval, &json!({"dataset": "d"})).unwrap();
        assert_eq!((job.id, job.status, job.started_at), (1, JobStatus::Queued, None));
        store.set_status(job.id, JobStatus::Running, None).unwrap();
        store.set_progress(job.id, &JobProgress { done: 3, total: 9, unit: "mazes".into() }).unwrap();
        let e1 = store.append_event(job.id, "progress", &json!({"done": 3})).unwrap();
        let e2 = store.append_event(job.id, "status", &json!({"status": "running"})).unwrap();
        assert_eq!((e1.seq, e2.seq), (1, 2));
        let done = store.create(JobKind::Eval, &json!({})).unwrap();
        store.set_result(done.id, &json!({"exact_accuracy": 0.5})).unwrap();
        store.set_status(done.id, JobStatus::Succeeded, None).unwrap();
        store.put_model(&StoredModel { name: "m".into(), checkpoint: "/c".into(), config: "/t".into() }).unwrap();
        drop(store);

        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.interrupt_unfinished().unwrap(), vec![job.id]);
        let back = store.get(job.id).unwrap().unwrap();
        assert_eq!(back.status, JobStatus::Interrupted);
        assert!(back.finished_at.is_some() && back.error.as_deref().unwrap().contains("server stopped"));
        assert_eq!(back.progress.unwrap().done, 3);
        assert!(!back.resumable, "an eval job is never resumable");
        assert_eq!(store.get(done.id).unwrap().unwrap().result, Some(json!({"exact_accuracy": 0.5})));
        assert_eq!(store.events_after(job.id, 1, 100).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        assert_eq!(store.list(10).unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), vec![done.id, job.id]);
        assert_eq!(store.models().unwrap()[0].checkpoint, "/c");
        assert!(store.get(99).unwrap().is_none());
    }

    #[test]
    fn a_job_keeps_a_bounded_log_with_every_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("jobs.sqlite")).unwrap();
        let job = store.create(JobKind::Eval, &json!({})).unwrap();
        store.append_event(job.id, "status", &json!({"status": "running"})).unwrap();
        let total = MAX_EVENTS_PER_JOB + 500;
        for i in 1..total {
            store.append_event(job.id, if i % 2 == 0 { "progress" } else { "metrics" }, &json!({ "i": i })).unwrap();
        }
        let kept = store.events_after(job.id, 0, usize::MAX).unwrap();
        assert_eq!(kept.len() as i64, MAX_EVENTS_PER_JOB + 1, "the bound plus the first status");
        assert_eq!(kept[0].kind, "status");
        assert_eq!(kept.last().unwrap().seq as i64, total);
        // Paging walks the same log.
        let page = store.events_after(job.id, kept[0].seq, 10).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), kept[1..11].iter().map(|e| e.seq).collect::<Vec<_>>());
    }
}
