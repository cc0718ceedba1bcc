//! Inside the CPU worker: keeps the last model it was sent (built on burn's Flex, either
//! family), runs each solve's ACT steps and posts the answer after every one (the size-general
//! model stops after the step where it halts), or times a fixed number of steps (the page's
//! benchmark). Nothing here is cancelled: the page terminates
//! the whole worker instead, even in the middle of a step.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::Flex;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::post::{from_js, to_js};
use super::protocol::{Job, Reply, Request};
use crate::act_steps::{ActSteps, AnyModel};
use crate::web;

/// The model the worker holds, by the page's id for it.
type Held = Rc<RefCell<Option<(u64, AnyModel<Flex>)>>>;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(reply: Reply) {
    // A reply never carries bytes; an error here would only mean the page is gone.
    if let Ok((message, _)) = to_js(reply.encode()) {
        let _ = scope().post_message(&message);
    }
}

/// Starts listening: called by the worker's `main` once its wasm is loaded.
pub fn start() {
    std::panic::set_hook(Box::new(|info| post(Reply::Failed(format!("the CPU worker crashed: {info}")))));
    let held: Held = Rc::default();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let held = held.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match answer(&held, &event.data()).await {
                Ok(reply) => post(reply),
                Err(message) => post(Reply::Failed(message)),
            }
        });
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(Reply::Ready);
}

/// One request: takes in its model if it brings one, then solves (posting every step) or times
/// the steps; returns the final reply.
async fn answer(held: &Held, data: &wasm_bindgen::JsValue) -> Result<Reply, String> {
    let request = Request::decode(from_js(data)?)?;
    let (timing, Job { model_id, model, tokens, rows, cols, steps }) = match request {
        Request::Solve(job) => (false, job),
        Request::Time(job) => (true, job),
    };
    if let Some(upload) = model {
        // The old model goes first: two big models at once may not fit in wasm's memory.
        held.borrow_mut().take();
        let spec = upload.into_spec()?;
        let built = spec.build::<Flex>(&Default::default())?;
        *held.borrow_mut() = Some((model_id, built));
    }
    let model = match &*held.borrow() {
        Some((id, m)) if *id == model_id => m.clone(),
        _ => return Err(format!("the CPU worker does not hold model {model_id}, and none was sent")),
    };
    if timing {
        let mut run = ActSteps::fixed(model, &tokens, rows, cols, steps, &Default::default())?;
        return Ok(Reply::Timed { steps_ms: run.time_each(web::now_ms).await? });
    }
    let start = web::now_ms();
    let mut run = ActSteps::new(model, &tokens, rows, cols, steps, &Default::default())?;
    let end = run
        .run(|answer| {
            post(Reply::Step(answer));
            async { Ok(()) }
        })
        .await?;
    Ok(Reply::Done { steps: end.steps, halted_at: end.halted_at, elapsed_ms: web::now_ms() - start })
}
