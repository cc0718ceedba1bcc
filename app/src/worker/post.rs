//! Envelopes to and from the JS objects `postMessage` carries: `{header, bytes?}`, where
//! `bytes` is an ArrayBuffer named in the transfer list, so it moves instead of being copied.

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsValue;

use super::protocol::Envelope;
use crate::web::js_error;

/// The message object and its transfer list. The bytes are copied once, out of the wasm
/// memory (which cannot be transferred), into a fresh buffer that then moves.
pub fn to_js(envelope: Envelope) -> Result<(JsValue, Array), String> {
    let message = Object::new();
    Reflect::set(&message, &"header".into(), &JsValue::from_str(&envelope.header)).map_err(js_error)?;
    let transfer = Array::new();
    if let Some(bytes) = envelope.bytes {
        let buffer = Uint8Array::new_from_slice(&bytes).buffer();
        drop(bytes);
        Reflect::set(&message, &"bytes".into(), &buffer).map_err(js_error)?;
        transfer.push(&buffer);
    }
    Ok((message.into(), transfer))
}

/// The envelope in a received message.
pub fn from_js(data: &JsValue) -> Result<Envelope, String> {
    let header = Reflect::get(data, &"header".into())
        .ok()
        .and_then(|h| h.as_string())
        .ok_or("a message without a text header")?;
    let bytes = Reflect::get(data, &"bytes".into())
        .ok()
        .filter(|b| !b.is_undefined() && !b.is_null())
        .map(|b| Uint8Array::new(&b).to_vec());
    Ok(Envelope { header, bytes })
}
