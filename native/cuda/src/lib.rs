//! strata's CUDA backend: every op of `strata::backend::Backend` as CUDA C kernels
//! (`shaders/cuda/*.cu`), compiled at run time by NVRTC through `cudarc`, with cuBLAS for
//! prefill. Nothing of the CUDA toolkit is needed to build: the driver, NVRTC and cuBLAS are
//! loaded when a backend is opened, and their absence is an error, never a panic.

pub mod backend;
pub mod kernels;
pub mod launch;

pub use backend::{CudaBackend, CudaBuf, CudaOptions, CudaWeight};

use cudarc::driver::{result, sys};

/// What `strata devices` shows for one CUDA device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceReport {
    pub index: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_memory: u64,
    pub multiprocessors: i32,
    /// e.g. 12080 for CUDA 12.8.
    pub driver_version: i32,
    /// Peak memory bandwidth from the clock and bus width (bytes/s), for roofline figures.
    pub memory_bandwidth: f64,
}

/// Whether the CUDA driver library (libcuda) can be loaded. cudarc panics on first use
/// when it cannot, so every entry point checks this first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// Whether cuBLAS can be loaded (prefill uses it; without it, the tiled matmul kernel).
pub fn cublas_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// The error for a machine without the driver library.
pub const NO_DRIVER: &str = "no CUDA driver: libcuda.so was not found (install the NVIDIA driver)";

/// Why the driver or a device could not be asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("{NO_DRIVER}")]
    NoDriver,
    /// A driver call that failed, with the driver's code.
    #[error("{call}: {code}")]
    Call { call: &'static str, code: String },
    #[error("no CUDA device #{index} (found {count})")]
    NoDevice { index: usize, count: i32 },
}

/// The driver loaded and initialised, or why not (cudarc would panic without the library).
fn init_driver() -> Result<(), DriverError> {
    if !driver_present() {
        return Err(DriverError::NoDriver);
    }
    result::init().map_err(err("cuInit failed (no usable NVIDIA GPU, or the driver does not match the kernel module)"))
}

fn err<E: std::fmt::Debug>(call: &'static str) -> impl FnOnce(E) -> DriverError {
    move |e| DriverError::Call { call, code: format!("{e:?}") }
}

fn attribute(d: sys::CUdevice, a: sys::CUdevice_attribute) -> Result<i32, DriverError> {
    // SAFETY: `d` came from cuDeviceGet.
    unsafe { result::device::get_attribute(d, a) }.map_err(err("cuDeviceGetAttribute"))
}

/// Device `index`'s report.
pub fn device_report(index: usize) -> Result<DeviceReport, DriverError> {
    init_driver()?;
    let count = result::device::get_count().map_err(err("cuDeviceGetCount"))?;
    if index >= count as usize {
        return Err(DriverError::NoDevice { index, count });
    }
    let d = result::device::get(index as i32).map_err(err("cuDeviceGet"))?;
    let name = result::device::get_name(d).map_err(err("cuDeviceGetName"))?;
    // SAFETY: as above.
    let total = unsafe { result::device::total_mem(d) }.map_err(err("cuDeviceTotalMem"))?;
    use sys::CUdevice_attribute::*;
    let major = attribute(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let sms = attribute(d, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let clock_khz = attribute(d, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).unwrap_or(0);
    let bus_bits = attribute(d, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH).unwrap_or(0);
    let mut driver_version = 0;
    // SAFETY: valid out-pointer; the library is loaded.
    let _ = unsafe { sys::cuDriverGetVersion(&mut driver_version) };
    Ok(DeviceReport {
        index,
        name,
        compute_capability: (major, minor),
        total_memory: total as u64,
        multiprocessors: sms,
        driver_version,
        // DDR: two transfers per clock.
        memory_bandwidth: 2.0 * f64::from(clock_khz) * 1e3 * f64::from(bus_bits) / 8.0,
    })
}

/// Every CUDA device, or why there are none (no driver, no GPU, driver mismatch).
pub fn devices() -> Result<Vec<DeviceReport>, DriverError> {
    init_driver()?;
    let count = result::device::get_count().map_err(err("cuDeviceGetCount"))?;
    (0..count as usize).map(device_report).collect()
}
