//! Looking for a wgpu adapter before burn uses one: burn 0.21 requests its adapter lazily on a
//! worker thread and panics there when none exists, so `--backend wgpu` (and the wgpu parity
//! test) asks wgpu itself first, the way burn's default device would, and either names the
//! adapter it found or says why there is none.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

/// No wgpu adapter on this machine.
#[derive(Debug, thiserror::Error)]
#[error(
    "no wgpu adapter for {backend} ({reason}); install a GPU driver, or for a CPU Vulkan device Mesa's lavapipe (Debian: mesa-vulkan-drivers)"
)]
pub struct NoAdapter {
    /// The graphics API asked for (burn's choice for this platform).
    pub backend: String,
    /// wgpu's answer.
    pub reason: String,
}

/// The adapter burn's default wgpu device would take: the graphics API burn picks for this
/// platform (Vulkan on Linux and Windows, Metal on macOS), high-performance preference.
/// burn's `CUBECL_WGPU_DEFAULT_DEVICE` override is not followed: it only narrows the choice.
pub fn default_adapter() -> Result<wgpu::AdapterInfo, NoAdapter> {
    let backend = AutoGraphicsApi::backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
    };
    block_on(instance.request_adapter(&options))
        .map(|adapter| adapter.get_info())
        .map_err(|e| NoAdapter { backend: backend.to_string(), reason: e.to_string() })
}

/// A one-line description of an adapter for logs and test output.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {}, driver {} {})", info.name, info.device_type, info.backend, info.driver, info.driver_info)
}

/// Runs a future to completion on this thread (native wgpu resolves adapter requests at once;
/// parking covers any that do not, and the probe needs no async runtime).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
