//! The one place that names a concrete backend: picked at compile time by cargo feature.
//! With several features on (e.g. `--all-features`), the first of cuda, wgpu, ndarray,
//! flex wins.

use anyhow::{Result, bail};
use burn::backend::Autodiff;
use burn::prelude::*;

#[cfg(feature = "cuda")]
pub type Inner = burn::backend::Cuda;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Inner = burn::backend::Wgpu;
#[cfg(all(feature = "ndarray", not(any(feature = "cuda", feature = "wgpu"))))]
pub type Inner = burn::backend::NdArray<f32>;
#[cfg(not(any(feature = "cuda", feature = "wgpu", feature = "ndarray")))]
pub type Inner = burn::backend::Flex;

/// The training backend: the inner one with reverse-mode autodiff on top.
pub type Train = Autodiff<Inner>;

pub type Dev = Device<Inner>;

/// The backend's name, as recorded in results.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "ndarray") {
    "ndarray"
} else {
    "flex"
};

/// A GPU backend: it queues work and computes asynchronously, so every value read back
/// to the host waits for the queue (the CPU backends compute eagerly).
pub const GPU: bool = cfg!(any(feature = "cuda", feature = "wgpu"));

/// The instructions the matmuls run on, as the CPU backends pick them at run time (see
/// `model::cpu`); `None` on the GPU builds.
pub fn matmul_isa() -> Option<&'static str> {
    (!GPU).then(model::cpu::matmul_isa)
}

/// The instructions `dtype = "bfloat16"`'s products run on (flex only); `None` where they
/// run in f32 (no AMX or AVX512-BF16) or on a GPU.
pub fn bf16_isa() -> Option<&'static str> {
    (NAME == "flex").then(model::cpu::bf16_isa).flatten()
}

/// `, matmuls: avx512 (x86-64-v4), bfloat16 products: amx-bf16` on the CPU backends
/// (empty on the GPU builds): the end of the line that says what a build runs on.
pub fn isa_note() -> String {
    let Some(matmul) = matmul_isa() else {
        return String::new();
    };
    let bf16 = bf16_isa().unwrap_or("none (bfloat16 computes in float32)");
    format!(", matmuls: {matmul}, bfloat16 products: {bf16}")
}

/// The device `--device INDEX` names, checked to exist before the runtime is asked for
/// it: a GPU runtime without a GPU or driver panics, so this asks the driver first.
pub fn device(index: Option<usize>) -> Result<Dev> {
    let device = find_device(index)?;
    let t = Tensor::<Inner, 1>::ones([2], &device);
    match t.sum().into_scalar().elem::<f32>() {
        2.0 => Ok(device),
        v => bail!("the {NAME} device computed 1 + 1 = {v}; refusing to train on it"),
    }
}

/// The GPU's name as its driver reports it (`None` on the CPU builds, or when the
/// driver cannot say): what `gpt bench` looks the peak FLOP/s up by.
#[cfg(feature = "cuda")]
pub fn device_name(index: Option<usize>) -> Option<String> {
    use cudarc::driver::result;
    // SAFETY: only probes whether the CUDA driver library can be loaded.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return None;
    }
    result::init().ok()?;
    let device = result::device::get(i32::try_from(index.unwrap_or(0)).ok()?).ok()?;
    result::device::get_name(device).ok()
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub fn device_name(index: Option<usize>) -> Option<String> {
    let (instance, backend) = wgpu_instance();
    let adapter = match index {
        Some(i) => ready(instance.enumerate_adapters(backend.into()))
            .into_iter()
            .filter(|a| a.get_info().device_type == wgpu::DeviceType::DiscreteGpu)
            .nth(i)?,
        None => ready(instance.request_adapter(&high_performance())).ok()?,
    };
    Some(adapter.get_info().name)
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
pub fn device_name(_: Option<usize>) -> Option<String> {
    None
}

/// Device memory Burn's allocator holds now (reserved, as PyTorch's
/// `memory_reserved`); its pools keep what they once held, so the largest value seen is
/// the peak. `None` on the CPU builds (`gpt bench` reports the process's peak RSS there).
#[cfg(feature = "cuda")]
pub fn device_memory(device: &Dev) -> Option<u64> {
    use cubecl::Runtime;
    let client = cubecl::cuda::CudaRuntime::client(device);
    client.memory_usage().ok().map(|m| m.bytes_reserved)
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub fn device_memory(device: &Dev) -> Option<u64> {
    use cubecl::Runtime;
    let client = cubecl::wgpu::WgpuRuntime::client(device);
    client.memory_usage().ok().map(|m| m.bytes_reserved)
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
pub fn device_memory(_: &Dev) -> Option<u64> {
    None
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn no_device(index: Option<usize>, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the {NAME} backend found no usable device{} ({why}): is a GPU and its driver present? Use a CPU build (the default, or --backend flex) instead",
        index.map(|i| format!(" at index {i}")).unwrap_or_default()
    )
}

#[cfg(feature = "cuda")]
fn find_device(index: Option<usize>) -> Result<Dev> {
    use cudarc::driver::result;
    // SAFETY: only probes whether the CUDA driver library can be loaded.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(no_device(index, "the CUDA driver library is not installed"));
    }
    result::init().map_err(|e| no_device(index, &e.to_string()))?;
    let count = result::device::get_count().map_err(|e| no_device(index, &e.to_string()))?;
    let i = index.unwrap_or(0);
    if i >= count as usize {
        return Err(no_device(Some(i), &format!("{count} CUDA devices")));
    }
    Ok(burn::backend::cuda::CudaDevice::new(i))
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn find_device(index: Option<usize>) -> Result<Dev> {
    use burn::backend::wgpu::WgpuDevice;
    let (instance, backend) = wgpu_instance();
    match index {
        // `--device i`: the i-th discrete GPU, as WgpuDevice::DiscreteGpu(i) selects it.
        Some(i) => {
            let discrete = ready(instance.enumerate_adapters(backend.into()))
                .iter()
                .filter(|a| a.get_info().device_type == wgpu::DeviceType::DiscreteGpu)
                .count();
            if i >= discrete {
                return Err(no_device(
                    Some(i),
                    &format!("{discrete} discrete {backend:?} GPUs"),
                ));
            }
            Ok(WgpuDevice::DiscreteGpu(i))
        }
        None => {
            ready(instance.request_adapter(&high_performance()))
                .map_err(|e| no_device(None, &format!("{backend:?}: {e}")))?;
            Ok(WgpuDevice::default())
        }
    }
}

/// The same instance as Burn's wgpu runtime (cubecl-wgpu) makes, which panics where
/// its adapter requests return nothing, and the graphics API it uses.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn wgpu_instance() -> (wgpu::Instance, wgpu::Backend) {
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    let backend = AutoGraphicsApi::backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    (instance, backend)
}

/// The adapter request of the default device.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn high_performance() -> wgpu::RequestAdapterOptions<'static, 'static> {
    wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
    }
}

/// The value of a future that native wgpu completes at once.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn ready<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn find_device(index: Option<usize>) -> Result<Dev> {
    if let Some(i) = index {
        bail!(
            "--device {i} picks a GPU, but this gpt is a CPU build ({NAME}): build it for a GPU (cargo xtask … --backend cuda or wgpu)"
        );
    }
    Ok(Default::default())
}
