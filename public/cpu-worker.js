// The CPU worker's script: loads the wasm that Trunk builds from app/src/bin/trm-worker.rs
// (wasm-bindgen's no-modules output: a global `wasm_bindgen`), whose `main` then listens.
// A wasm that cannot be loaded is reported in the app's own reply format
// (app/src/worker/protocol.rs), so the page says why instead of waiting forever.
importScripts('./trm-worker.js');
wasm_bindgen('./trm-worker_bg.wasm').catch((error) => {
  const message = `the CPU worker could not load its wasm: ${error}`;
  self.postMessage({ header: JSON.stringify({ kind: 'failed', message }) });
});
