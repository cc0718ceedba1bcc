//! Running the served models, with no HTTP in it: the registry of models, one model thread
//! per model that owns its weights, and the batcher that groups concurrent requests for it.
//! The HTTP layer (`crate::api`) depends on this module, never the other way.

pub mod batcher;
pub mod model_roots;
pub mod model_thread;
pub mod registry;
