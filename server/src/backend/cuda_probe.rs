//! Probing the CUDA driver before burn uses it: burn 0.21 loads libcuda and libnvrtc lazily
//! on a worker thread and panics there when they are missing, so `--backend cuda` checks them
//! first and fails with an error that says what to install.

use std::ffi::c_int;

/// Why CUDA cannot be used on this machine.
#[derive(Debug, thiserror::Error)]
pub enum CudaProbeError {
    /// No driver library could be loaded.
    #[error("the CUDA driver library could not be loaded (tried {tried}): {reason}. Install the NVIDIA driver or add its directory to LD_LIBRARY_PATH")]
    NoDriver {
        /// The names tried.
        tried: String,
        /// The loader's last error.
        reason: String,
    },
    /// The driver has no entry point we need (a very old or broken driver).
    #[error("the CUDA driver {library} lacks {symbol}: {reason}")]
    MissingSymbol {
        /// The library loaded.
        library: String,
        /// The function looked up.
        symbol: &'static str,
        /// The loader's error.
        reason: String,
    },
    /// A driver call failed.
    #[error("the CUDA driver call {call} failed with CUresult {code}{hint}")]
    Call {
        /// The function called.
        call: &'static str,
        /// Its return code.
        code: c_int,
        /// What the common codes mean.
        hint: &'static str,
    },
    /// The runtime compiler (kernels are compiled at run time) could not be loaded.
    #[error("the CUDA runtime compiler libnvrtc could not be loaded (tried {tried}). Install the CUDA toolkit's nvrtc (or pip's nvidia-cuda-nvrtc) and add its directory to LD_LIBRARY_PATH")]
    NoNvrtc {
        /// The names tried.
        tried: String,
    },
}

/// Names of the driver library, most specific first.
pub const DRIVER_NAMES: &[&str] = &["libcuda.so.1", "libcuda.so", "nvcuda.dll"];

/// Names of the runtime compiler library.
pub const NVRTC_NAMES: &[&str] =
    &["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.1", "nvrtc64_130_0.dll", "nvrtc64_120_0.dll"];

/// Loads the first library of `names` that loads.
fn load_first(names: &[&str]) -> Result<(libloading::Library, String), String> {
    let mut last = String::from("no names given");
    for name in names {
        // SAFETY: loading the NVIDIA libraries runs only their own initialisers.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return Ok((lib, (*name).to_string())),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// How many CUDA devices the driver sees, after checking that libcuda (from `driver_names`)
/// and libnvrtc (from `nvrtc_names`) load.
pub fn cuda_device_count_with(driver_names: &[&str], nvrtc_names: &[&str]) -> Result<usize, CudaProbeError> {
    let (lib, library) =
        load_first(driver_names).map_err(|reason| CudaProbeError::NoDriver { tried: driver_names.join(", "), reason })?;
    type CuInit = unsafe extern "C" fn(flags: u32) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(count: *mut c_int) -> c_int;
    let missing = |symbol: &'static str| {
        let library = library.clone();
        move |e: libloading::Error| CudaProbeError::MissingSymbol { library, symbol, reason: e.to_string() }
    };
    // SAFETY: the signatures are the CUDA driver API's (`CUresult cuInit(unsigned int)`,
    // `CUresult cuDeviceGetCount(int*)`), and `lib` outlives both calls.
    let count = unsafe {
        let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0").map_err(missing("cuInit"))?;
        let get_count: libloading::Symbol<CuDeviceGetCount> = lib.get(b"cuDeviceGetCount\0").map_err(missing("cuDeviceGetCount"))?;
        check("cuInit", init(0))?;
        let mut count: c_int = 0;
        check("cuDeviceGetCount", get_count(&mut count))?;
        count
    };
    load_first(nvrtc_names).map_err(|_| CudaProbeError::NoNvrtc { tried: nvrtc_names.join(", ") })?;
    Ok(count.max(0) as usize)
}

/// How many CUDA devices this machine has, or why CUDA cannot be used.
pub fn cuda_device_count() -> Result<usize, CudaProbeError> {
    cuda_device_count_with(DRIVER_NAMES, NVRTC_NAMES)
}

fn check(call: &'static str, code: c_int) -> Result<(), CudaProbeError> {
    let hint = match code {
        0 => return Ok(()),
        100 => " (CUDA_ERROR_NO_DEVICE: no GPU visible; check CUDA_VISIBLE_DEVICES)",
        35 => " (CUDA_ERROR_INSUFFICIENT_DRIVER: the driver is older than this build needs)",
        3 => " (CUDA_ERROR_NOT_INITIALIZED)",
        _ => "",
    };
    Err(CudaProbeError::Call { call, code, hint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_is_an_error_naming_what_to_install() {
        let err = cuda_device_count_with(&["libcuda-that-does-not-exist.so.1"], NVRTC_NAMES).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("libcuda-that-does-not-exist.so.1"), "{text}");
        assert!(text.contains("LD_LIBRARY_PATH"), "{text}");
    }

    #[test]
    fn a_library_without_the_driver_api_is_an_error() {
        // libc loads everywhere on Linux but has no cuInit.
        if cfg!(target_os = "linux") {
            let err = cuda_device_count_with(&["libc.so.6"], NVRTC_NAMES).unwrap_err();
            assert!(matches!(err, CudaProbeError::MissingSymbol { symbol: "cuInit", .. }), "{err}");
        }
    }
}
