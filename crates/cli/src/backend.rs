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

/// The device `--device INDEX` names (ignored by the CPU backends), checked to work: a
/// GPU backend with no GPU or driver is a clear error, not a panic deep in the runtime.
pub fn device(index: Option<usize>) -> Result<Dev> {
    let device = make_device(index);
    // GPU runtimes panic when the driver is missing; turn that into an error.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<Inner, 1>::ones([2], &device);
        t.sum().into_scalar().elem::<f32>()
    });
    std::panic::set_hook(hook);
    match probe {
        Ok(2.0) => Ok(device),
        Ok(v) => bail!("the {NAME} device computed 1 + 1 = {v}; refusing to train on it"),
        Err(_) => bail!(
            "the {NAME} backend found no usable device{}: is a GPU and its driver present? \
             Use a CPU build (the default, or --backend flex) instead",
            index.map(|i| format!(" at index {i}")).unwrap_or_default()
        ),
    }
}

#[cfg(feature = "cuda")]
fn make_device(index: Option<usize>) -> Dev {
    burn::backend::cuda::CudaDevice::new(index.unwrap_or(0))
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn make_device(index: Option<usize>) -> Dev {
    match index {
        Some(i) => burn::backend::wgpu::WgpuDevice::DiscreteGpu(i),
        None => burn::backend::wgpu::WgpuDevice::default(),
    }
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn make_device(_index: Option<usize>) -> Dev {
    Default::default()
}
