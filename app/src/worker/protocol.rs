//! The messages between the page and its CPU worker (`src/bin/trm-worker.rs`).
//!
//! A message crosses `postMessage` as an [`Envelope`]: a JSON header and, only for a model,
//! its weights as a separate byte buffer, which the page transfers to the worker rather than
//! copying it. The page sends one [`Request`] at a time; the worker answers [`Reply::Ready`]
//! once when it starts, then per solve one [`Reply::Step`] per ACT step and a [`Reply::Done`],
//! per timing (the page's benchmark) one [`Reply::Timed`], or a [`Reply::Failed`] naming what
//! went wrong. `public/cpu-worker.js` writes a
//! `failed` header itself when the worker's wasm cannot be loaded.
//!
//! A model travels with its family ([`Arch`]): the reference TRM runs exactly `steps` ACT
//! steps on its own frame, the size-general TRM runs the maze on its own `rows` x `cols` grid
//! and stops after the step where it halts (at most `steps`).

use serde::{Deserialize, Serialize};
use trm_shared::model::StateDict;

use crate::analysis::StepTokens;
use crate::model_files::{Arch, ModelSpec};

/// One message as it crosses `postMessage`.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The message itself, as JSON.
    pub header: String,
    /// A model's weights (safetensors), kept out of the JSON so that they can be transferred.
    pub bytes: Option<Vec<u8>>,
}

/// A model for the worker: its family with the page's resolved config, and its weights as
/// safetensors.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelUpload {
    /// Where the model came from (for messages).
    pub name: String,
    /// The model family and its config (with every dataset field filled, for the reference).
    pub arch: Arch,
    /// The weights, f32 safetensors under the checkpoint's names.
    pub weights: Vec<u8>,
}

impl ModelUpload {
    /// The model of `spec`, ready to send (its weights written as safetensors).
    pub fn from_spec(spec: &ModelSpec) -> Result<ModelUpload, String> {
        let weights = spec.state.to_safetensors_bytes("", &[]).map_err(|e| format!("model {}: {e}", spec.name))?;
        Ok(ModelUpload { name: spec.name.clone(), arch: spec.arch.clone(), weights })
    }

    /// The model spec again, on the worker's side.
    pub fn into_spec(self) -> Result<ModelSpec, String> {
        let state = StateDict::from_safetensors_bytes(&self.weights, &self.name).map_err(|e| e.to_string())?;
        Ok(ModelSpec { name: self.name, arch: self.arch, state })
    }
}

/// ACT steps on the `rows` x `cols` maze `tokens` (row-major) with model `model_id`. `model`
/// comes along when the worker does not hold that model yet, and replaces the one it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub model_id: u64,
    pub model: Option<ModelUpload>,
    pub tokens: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub steps: usize,
}

/// What the page asks of the worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Solves: `steps` ACT steps for the reference model, at most `steps` for the size-general
    /// one (it stops after the step where it halts), each answer posted.
    Solve(Job),
    /// Times exactly `steps` ACT steps, halting ignored, answers not posted (the benchmark).
    Time(Job),
}

/// What the worker tells the page.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The worker is listening (sent once, when it starts).
    Ready,
    /// The answer after one ACT step.
    Step(StepTokens),
    /// The request finished: ACT steps run, the step where the size-general model halted
    /// (`None`: it ran to the cap, or the model is the reference one), and their wall time
    /// (model building excluded).
    Done { steps: usize, halted_at: Option<usize>, elapsed_ms: f64 },
    /// A timing finished: each step's wall time in ms, in order.
    Timed { steps_ms: Vec<f64> },
    /// The request failed, and why.
    Failed(String),
}

#[derive(Serialize, Deserialize)]
struct ModelHeader {
    name: String,
    arch: Arch,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobHeader {
    model_id: u64,
    model: Option<ModelHeader>,
    tokens: Vec<u8>,
    rows: usize,
    cols: usize,
    steps: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RequestHeader {
    Solve(JobHeader),
    Time(JobHeader),
}

/// q_halt travels as its bits: JSON has no NaN or infinity, and a diverged model gives them.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ReplyHeader {
    Ready,
    Step { step: usize, tokens: Vec<u8>, q_halt_bits: u32 },
    Done { steps: usize, halted_at: Option<usize>, elapsed_ms: f64 },
    Timed { steps_ms: Vec<f64> },
    Failed { message: String },
}

fn to_json(header: &impl Serialize) -> String {
    // Plain structs of numbers, strings and vectors: serde_json cannot fail on them.
    serde_json::to_string(header).unwrap_or_default()
}

fn from_json<'a, T: Deserialize<'a>>(what: &str, header: &'a str) -> Result<T, String> {
    serde_json::from_str(header).map_err(|e| format!("unreadable {what} message: {e}"))
}

impl Job {
    /// The job's header, and its model's weights apart.
    fn split(self) -> (JobHeader, Option<Vec<u8>>) {
        let Job { model_id, model, tokens, rows, cols, steps } = self;
        let (model, bytes) = match model {
            Some(m) => (Some(ModelHeader { name: m.name, arch: m.arch }), Some(m.weights)),
            None => (None, None),
        };
        (JobHeader { model_id, model, tokens, rows, cols, steps }, bytes)
    }

    /// The job again, refusing weights without a model and a model without weights.
    fn join(header: JobHeader, bytes: Option<Vec<u8>>) -> Result<Job, String> {
        let JobHeader { model_id, model, tokens, rows, cols, steps } = header;
        let model = match (model, bytes) {
            (Some(m), Some(weights)) => Some(ModelUpload { name: m.name, arch: m.arch, weights }),
            (None, None) => None,
            (Some(m), None) => return Err(format!("model {} came without its weights", m.name)),
            (None, Some(b)) => return Err(format!("{} bytes of weights came without a model", b.len())),
        };
        Ok(Job { model_id, model, tokens, rows, cols, steps })
    }
}

impl Request {
    /// The job asked for, whatever the request.
    pub fn job(&self) -> &Job {
        match self {
            Request::Solve(job) | Request::Time(job) => job,
        }
    }

    /// The request as it is posted; a model's weights go into the envelope's bytes.
    pub fn encode(self) -> Envelope {
        let (kind, job): (fn(JobHeader) -> RequestHeader, Job) = match self {
            Request::Solve(job) => (RequestHeader::Solve, job),
            Request::Time(job) => (RequestHeader::Time, job),
        };
        let (header, bytes) = job.split();
        Envelope { header: to_json(&kind(header)), bytes }
    }

    /// Reads a posted request.
    pub fn decode(envelope: Envelope) -> Result<Request, String> {
        Ok(match from_json("request", &envelope.header)? {
            RequestHeader::Solve(h) => Request::Solve(Job::join(h, envelope.bytes)?),
            RequestHeader::Time(h) => Request::Time(Job::join(h, envelope.bytes)?),
        })
    }
}

impl Reply {
    /// The reply as it is posted (never with bytes).
    pub fn encode(&self) -> Envelope {
        let header = match self {
            Reply::Ready => ReplyHeader::Ready,
            Reply::Step(s) => ReplyHeader::Step { step: s.step, tokens: s.tokens.clone(), q_halt_bits: s.q_halt.to_bits() },
            Reply::Done { steps, halted_at, elapsed_ms } => {
                ReplyHeader::Done { steps: *steps, halted_at: *halted_at, elapsed_ms: *elapsed_ms }
            }
            Reply::Timed { steps_ms } => ReplyHeader::Timed { steps_ms: steps_ms.clone() },
            Reply::Failed(message) => ReplyHeader::Failed { message: message.clone() },
        };
        Envelope { header: to_json(&header), bytes: None }
    }

    /// Reads a posted reply.
    pub fn decode(envelope: &Envelope) -> Result<Reply, String> {
        Ok(match from_json("reply", &envelope.header)? {
            ReplyHeader::Ready => Reply::Ready,
            ReplyHeader::Step { step, tokens, q_halt_bits } => {
                Reply::Step(StepTokens { step, tokens, q_halt: f32::from_bits(q_halt_bits) })
            }
            ReplyHeader::Done { steps, halted_at, elapsed_ms } => Reply::Done { steps, halted_at, elapsed_ms },
            ReplyHeader::Timed { steps_ms } => Reply::Timed { steps_ms },
            ReplyHeader::Failed { message } => Reply::Failed(message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_files::tests::{CONFIG, LOCAL_CONFIG, local_weights, weights};

    fn spec() -> ModelSpec {
        crate::model_files::load(("config.toml", CONFIG), ("model.safetensors", &weights()), "test").unwrap()
    }

    #[test]
    fn a_solve_with_its_model_round_trips_with_the_weights_outside_the_json() {
        let spec = spec();
        let upload = ModelUpload::from_spec(&spec).unwrap();
        let request = Request::Solve(Job { model_id: 7, model: Some(upload.clone()), tokens: vec![3, 2, 1, 4], rows: 2, cols: 2, steps: 5 });
        let envelope = request.clone().encode();
        assert_eq!(envelope.bytes.as_deref(), Some(upload.weights.as_slice()));
        assert!(envelope.header.len() < 2000, "weights leaked into the header: {} bytes", envelope.header.len());
        assert_eq!(Request::decode(envelope).unwrap(), request);
    }

    #[test]
    fn a_model_upload_gives_back_the_same_weights_and_config() {
        let spec = spec();
        let back = ModelUpload::from_spec(&spec).unwrap().into_spec().unwrap();
        assert_eq!((back.name.as_str(), back.side()), ("test", Some(5)));
        assert_eq!(back.arch, spec.arch);
        assert_eq!(back.state.tensors.keys().collect::<Vec<_>>(), spec.state.tensors.keys().collect::<Vec<_>>());
        for (name, t) in &spec.state.tensors {
            let b = &back.state.tensors[name];
            assert_eq!((&b.shape, &b.values), (&t.shape, &t.values), "{name}");
        }
    }

    #[test]
    fn a_solve_without_a_model_carries_no_bytes() {
        let request = Request::Solve(Job { model_id: u64::MAX, model: None, tokens: vec![0; 49], rows: 7, cols: 7, steps: 64 });
        let envelope = request.clone().encode();
        assert_eq!(envelope.bytes, None);
        assert_eq!(Request::decode(envelope).unwrap(), request);
    }

    #[test]
    fn a_timing_is_its_own_request_with_the_same_job() {
        let job = Job { model_id: 3, model: Some(ModelUpload::from_spec(&spec()).unwrap()), tokens: vec![2; 25], rows: 5, cols: 5, steps: 9 };
        let (solve, time) = (Request::Solve(job.clone()).encode(), Request::Time(job.clone()).encode());
        assert!(time.header.starts_with(r#"{"kind":"time","model_id":3,"#), "{}", time.header);
        assert_eq!(time.header.replacen("time", "solve", 1), solve.header);
        assert_eq!(time.bytes, solve.bytes);
        let back = Request::decode(time).unwrap();
        assert_eq!(back.job(), &job);
        assert_eq!(back, Request::Time(job));
        let e = Request::decode(Envelope { header: r#"{"kind":"time","steps":1}"#.into(), bytes: None }).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
        let extra = r#"{"kind":"time","model_id":1,"model":null,"tokens":[],"rows":0,"cols":0,"steps":1,"halt":true}"#;
        let e = Request::decode(Envelope { header: extra.into(), bytes: None }).unwrap_err();
        assert!(e.contains("unknown field `halt`"), "{e}");
    }

    #[test]
    fn replies_round_trip_with_non_finite_q_halt() {
        let replies = [
            Reply::Ready,
            Reply::Step(StepTokens { step: 3, tokens: vec![1, 2, 5, 0], q_halt: -1.25 }),
            Reply::Step(StepTokens { step: 4, tokens: vec![], q_halt: f32::NEG_INFINITY }),
            Reply::Done { steps: 16, halted_at: None, elapsed_ms: 1234.5 },
            Reply::Done { steps: 35, halted_at: Some(35), elapsed_ms: 0.25 },
            Reply::Timed { steps_ms: vec![812.25, 40.5, 39.0] },
            Reply::Failed("the maze has 48 cells".into()),
        ];
        for reply in replies {
            let envelope = reply.encode();
            assert_eq!(envelope.bytes, None);
            assert_eq!(Reply::decode(&envelope).unwrap(), reply);
        }
        let nan = Reply::Step(StepTokens { step: 1, tokens: vec![2], q_halt: f32::NAN }).encode();
        match Reply::decode(&nan).unwrap() {
            Reply::Step(s) => assert!(s.q_halt.is_nan(), "{}", s.q_halt),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let e = Reply::decode(&Envelope { header: "not json".into(), bytes: None }).unwrap_err();
        assert!(e.starts_with("unreadable reply message:"), "{e}");
        let e = Reply::decode(&Envelope { header: r#"{"kind":"explode"}"#.into(), bytes: None }).unwrap_err();
        assert!(e.contains("unknown variant `explode`"), "{e}");
        let step = r#"{"kind":"step","step":1,"tokens":[300],"q_halt_bits":0}"#;
        assert!(Reply::decode(&Envelope { header: step.into(), bytes: None }).is_err());

        let mut with_model = Request::Solve(Job {
            model_id: 1,
            model: Some(ModelUpload::from_spec(&spec()).unwrap()),
            tokens: vec![2; 25],
            rows: 5,
            cols: 5,
            steps: 1,
        })
        .encode();
        with_model.bytes = None;
        let e = Request::decode(with_model).unwrap_err();
        assert_eq!(e, "model test came without its weights");
        let mut bare = Request::Solve(Job { model_id: 1, model: None, tokens: vec![], rows: 0, cols: 0, steps: 1 }).encode();
        bare.bytes = Some(vec![0; 12]);
        assert_eq!(Request::decode(bare).unwrap_err(), "12 bytes of weights came without a model");
        let e = Request::decode(Envelope { header: r#"{"kind":"solve","steps":1}"#.into(), bytes: None }).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn a_size_general_model_travels_with_its_family_and_any_maze_size() {
        let spec = crate::model_files::load(("config.toml", LOCAL_CONFIG), ("model.safetensors", &local_weights()), "default").unwrap();
        let upload = ModelUpload::from_spec(&spec).unwrap();
        let request = Request::Solve(Job { model_id: 2, model: Some(upload.clone()), tokens: vec![2; 30 * 17], rows: 30, cols: 17, steps: 256 });
        let envelope = request.clone().encode();
        assert!(envelope.header.contains(r#""family":"local""#), "{}", envelope.header);
        assert!(envelope.header.contains(r#""mixer":"local""#), "{}", envelope.header);
        assert_eq!(envelope.bytes.as_deref(), Some(upload.weights.as_slice()));
        assert_eq!(Request::decode(envelope).unwrap(), request);
        let back = upload.into_spec().unwrap();
        assert!(back.is_local());
        assert_eq!(back.side(), None);
        assert_eq!(back.arch, spec.arch);
        assert_eq!(back.state.tensors.keys().collect::<Vec<_>>(), spec.state.tensors.keys().collect::<Vec<_>>());
        // A family the worker does not know is refused, by name.
        let header = r#"{"kind":"solve","model_id":1,"model":{"name":"x","arch":{"family":"quantum"}},"tokens":[],"rows":0,"cols":0,"steps":1}"#;
        let e = Request::decode(Envelope { header: header.into(), bytes: Some(vec![0; 4]) }).unwrap_err();
        assert!(e.contains("unknown variant `quantum`"), "{e}");
    }

    #[test]
    fn truncated_weights_fail_when_the_worker_reads_them() {
        let mut upload = ModelUpload::from_spec(&spec()).unwrap();
        upload.weights.truncate(upload.weights.len() / 2);
        let e = upload.into_spec().unwrap_err();
        assert!(e.starts_with("test: not a readable checkpoint"), "{e}");
    }
}
