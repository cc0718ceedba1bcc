//! The page's side of the CPU worker: starts it, posts requests, and hands its replies to
//! whoever awaits them. Dropping the handle terminates the worker at once, mid-step or
//! not, and wakes the waiting solve with [`Event::Stopped`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ErrorEvent, Event as DomEvent, MessageEvent, Worker};

use super::post::{from_js, to_js};
use super::protocol::{Reply, Request};
use crate::web::js_error;

/// The worker's script (`public/cpu-worker.js`): loads the wasm Trunk builds from
/// `src/bin/trm-worker.rs` and reports a load failure as a reply.
const SCRIPT: &str = "cpu-worker.js";

/// What a waiting solve can hear.
#[derive(Debug)]
pub enum Event {
    /// A reply from the worker.
    Reply(Reply),
    /// The worker failed outside any request (its script or wasm did not load, a trap).
    Broken(String),
    /// The page stopped the worker.
    Stopped,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    /// Resolves the promise a waiting [`Inbox::next`] sleeps on.
    wake: Option<Function>,
    ready: bool,
}

/// The worker's replies, in order, for the page's async code.
#[derive(Clone, Default)]
pub struct Inbox(Rc<RefCell<Queue>>);

impl Inbox {
    fn push(&self, event: Event) {
        let wake = {
            let mut q = self.0.borrow_mut();
            q.events.push_back(event);
            q.wake.take()
        };
        if let Some(wake) = wake {
            let _ = wake.call0(&wasm_bindgen::JsValue::NULL);
        }
    }

    /// The next event, waiting for it if none has come yet.
    pub async fn next(&self) -> Event {
        loop {
            if let Some(event) = self.0.borrow_mut().events.pop_front() {
                return event;
            }
            let inbox = self.0.clone();
            let promise = Promise::new(&mut |resolve, _| inbox.borrow_mut().wake = Some(resolve));
            let _ = JsFuture::from(promise).await;
        }
    }

    /// Waits until the worker listens (at once after the first time); any other event is
    /// the reason it never will.
    pub async fn ready(&self) -> Result<(), Event> {
        while !self.0.borrow().ready {
            match self.next().await {
                Event::Reply(Reply::Ready) => self.0.borrow_mut().ready = true,
                other => return Err(other),
            }
        }
        Ok(())
    }
}

/// A running CPU worker and the model it holds.
pub struct CpuWorker {
    worker: Worker,
    inbox: Inbox,
    model_id: Option<u64>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(DomEvent)>,
}

impl CpuWorker {
    /// Starts a worker; it says [`Reply::Ready`] once its wasm is loaded.
    pub fn spawn() -> Result<CpuWorker, String> {
        let worker = Worker::new(SCRIPT).map_err(|e| format!("the CPU worker cannot start: {}", js_error(e)))?;
        let inbox = Inbox::default();
        let to_inbox = inbox.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let reply = from_js(&event.data()).and_then(|e| Reply::decode(&e));
            to_inbox.push(match reply {
                Ok(reply) => Event::Reply(reply),
                Err(e) => Event::Broken(format!("the CPU worker sent {e}")),
            });
        });
        let to_inbox = inbox.clone();
        let on_error = Closure::<dyn FnMut(DomEvent)>::new(move |event: DomEvent| {
            // An uncaught error inside the worker is an ErrorEvent; a script that did not
            // load (offline, not cached) is a bare event.
            let detail = event.dyn_ref::<ErrorEvent>().map(|e| e.message()).filter(|m| !m.is_empty());
            to_inbox.push(Event::Broken(match detail {
                Some(m) => format!("the CPU worker failed: {m}"),
                None => format!("the CPU worker failed to load ({SCRIPT} or its wasm is missing)"),
            }));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(CpuWorker { worker, inbox, model_id: None, _on_message: on_message, _on_error: on_error })
    }

    /// Where this worker's replies arrive.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Whether the worker holds model `id` (sent with an earlier request).
    pub fn holds(&self, id: u64) -> bool {
        self.model_id == Some(id)
    }

    /// Posts a request, transferring a model's weights; the worker holds that model after.
    pub fn send(&mut self, request: Request) -> Result<(), String> {
        let model_id = request.job().model_id;
        let (message, transfer) = to_js(request.encode())?;
        self.worker
            .post_message_with_transfer(&message, &transfer)
            .map_err(|e| format!("sending to the CPU worker: {}", js_error(e)))?;
        self.model_id = Some(model_id);
        Ok(())
    }
}

impl Drop for CpuWorker {
    fn drop(&mut self) {
        // Handlers first: nothing may call into closures that are about to be freed.
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
        self.inbox.push(Event::Stopped);
    }
}
