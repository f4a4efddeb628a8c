//! Peak FLOP/s of known GPUs, for the MFU `gpt bench` reports: dense (no sparsity)
//! tensor-core figures from the vendors' data sheets, by the dtype of the matmuls.
//! float32 is the plain (non-tensor-core, non-TF32) rate: Burn's f32 matmuls are exact
//! f32. `--peak-flops` overrides; an unknown device has no MFU.

use model::Precision;

/// (name fragment as the driver reports it, bf16/f16 peak, f32 peak), most specific first.
const PEAKS: &[(&str, f64, f64)] = &[
    ("H200", 989e12, 67e12),
    ("H100 PCIe", 756e12, 51e12),
    ("H100 NVL", 835e12, 60e12),
    ("H100", 989e12, 67e12), // SXM, nanoGPT's figure
    ("A100", 312e12, 19.5e12),
    ("L40S", 362e12, 91.6e12),
    ("L4", 121e12, 30.3e12),
    ("A10", 125e12, 31.2e12),
    ("RTX 4090", 165e12, 82.6e12),
    ("RTX 3090", 71e12, 35.6e12),
];

/// The peak for `dtype` of the device called `name`, if the table knows it.
pub fn peak_flops(name: &str, dtype: Precision) -> Option<f64> {
    let (_, half, single) = PEAKS.iter().find(|(key, ..)| name.contains(key))?;
    Some(match dtype {
        Precision::Float32 => *single,
        Precision::BFloat16 | Precision::Float16 => *half,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_by_name_and_dtype() {
        assert_eq!(
            peak_flops("NVIDIA H100 80GB HBM3", Precision::BFloat16),
            Some(989e12)
        );
        assert_eq!(
            peak_flops("NVIDIA H100 PCIe", Precision::Float32),
            Some(51e12)
        );
        assert_eq!(peak_flops("NVIDIA H200", Precision::Float16), Some(989e12));
        assert_eq!(
            peak_flops("llvmpipe (LLVM 15.0.6, 256 bits)", Precision::Float32),
            None
        );
    }
}
