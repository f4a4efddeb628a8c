//! Which instructions the CPU backend's matmuls run on, picked at run time.
//!
//! One binary serves every x86-64 CPU. gemm (flex's matmuls, and the products inside the
//! fused attention kernel) carries AVX-512 (x86-64-v4) and AVX2+FMA (x86-64-v3) kernels and
//! picks one on its first call from what the CPU reports; the crate's own loops (the
//! attention kernel's softmax, GELU) are compiled for the same two levels by `multiversion`
//! and pick theirs the same way, and flex's elementwise kernels (AdamW's and clipping's
//! passes among them) dispatch through `macerator`, AVX-512 included. bfloat16's products
//! ([`crate::autocast`]) run on AMX tiles or AVX512-BF16.

/// The kernels gemm picks for f32 matmuls on this CPU, as gemm itself decides.
pub fn matmul_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512 (x86-64-v4)"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2+fma (x86-64-v3)"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// The instructions `dtype = "bfloat16"`'s products run on (`amx-bf16`, `avx512-bf16`),
/// `None` where the CPU has neither (it then computes in f32).
pub fn bf16_isa() -> Option<&'static str> {
    #[cfg(feature = "fused")]
    {
        crate::bf16_gemm::bf16_isa().map(crate::bf16_gemm::Bf16Isa::name)
    }
    #[cfg(not(feature = "fused"))]
    {
        None
    }
}
