//! A CPU matrix multiply in bfloat16 with float32 accumulation: the matmul of "autocast"
//! mixed-precision training on x86 (what `torch.autocast("cpu", dtype=torch.bfloat16)`
//! gets from oneDNN).
//!
//! # Why bfloat16, and why the inputs are rounded while packing
//!
//! bfloat16 is the top half of an f32: the same sign and 8-bit exponent (so the same
//! range), 7 mantissa bits instead of 23. A product of two bf16 values has at most 16
//! significant bits, so it is exact in f32, and summing the products in f32 loses no more
//! than an f32 matmul does: the only precision given up is the rounding of each *input* to
//! bf16 (a relative error of at most 2⁻⁹). Recent x86 cores multiply bf16 pairs in hardware,
//! two (AVX512-BF16) or far more (AMX) products per f32 lane and instruction.
//!
//! The tensors stay f32 in memory, so the inputs must become bf16 somewhere. Every fast
//! matmul copies its operands into a "packed" layout first anyway (the order in which the
//! microkernel reads them, so that every load is a contiguous, aligned cache line); this
//! one rounds each value to bf16 during that copy, which costs nothing extra: the pass over
//! the operand happens anyway, and the packed copy is half the size of an f32 one. The
//! rounding is round-to-nearest-even with NaN kept NaN, bit for bit what `half::bf16::from_f32`
//! and PyTorch's cast give, so results match a bf16 cast followed by an f32-accumulating
//! matmul.
//!
//! # The two instruction sets
//!
//! - **AMX** (Advanced Matrix Extensions, Sapphire Rapids and later): eight *tile*
//!   registers `tmm0`–`tmm7`, each up to 16 rows × 64 bytes, and `tdpbf16ps C, A, B`, which
//!   does a whole 16×16×32 matrix product (16 384 flops) in one instruction: C is 16 rows ×
//!   16 f32, A is 16 rows × 32 bf16 (one row of A per row of C, 32 values of k), and B is
//!   16 rows × 32 bf16 in the *VNNI pair layout* below. The microkernel keeps a 32×32 block
//!   of C in four tiles (`tmm0`–`tmm3`) and streams two A tiles (`tmm4`, `tmm5`) and two B
//!   tiles (`tmm6`, `tmm7`) through them, 32 values of k at a time: each loaded tile feeds
//!   two products.
//! - **AVX512-BF16** (Cooper Lake, Sapphire Rapids, Zen 4 and later): `vdpbf16ps`, per f32
//!   lane `c += a₀·b₀ + a₁·b₁` over one *pair* of bf16 values in each 32-bit lane. The
//!   microkernel holds 8 rows × 32 columns of C in 16 zmm registers; per pair of k it loads
//!   the 32 columns of B (two registers) and broadcasts each row's pair of A values.
//!
//! # The VNNI pair layout of B
//!
//! Both instructions take k two at a time: the pair (k = 2r, 2r + 1) of one output column
//! sits side by side in one 32-bit lane, `[b[2r][j], b[2r + 1][j]]`. A row of a B tile (64
//! bytes) is therefore one k-pair across 16 columns, and a tile is 16 such rows: 32 values
//! of k by 16 columns. The same packed B serves both instruction sets: a B tile row is
//! exactly the zmm register `vdpbf16ps` wants. A is packed plainly, row-major with k
//! contiguous (a row of an A tile is 32 values of k: 16 pairs).
//!
//! # Blocking and threads
//!
//! Both operands are packed once per call (in parallel), in 16-row (A) and 16-column (B)
//! groups of 1 KiB tiles, zero-padded at the edges of m, n and k so that the microkernel
//! never takes a partial tile; only the valid part of C is written back. The output is cut
//! into blocks of 128 × 256, one rayon task each; a task sweeps its blocks' k in at most
//! 1536-value passes, so that the A and B blocks it multiplies stay in the core's L2 cache,
//! keeps its partial sums in a per-thread f32 scratch block, and writes its block of the
//! output at the end (with streaming stores when the output is too big to stay cached).
//!
//! # What limits the speed (measured on the Sapphire Rapids this was written on)
//!
//! - AMX: a `tdpbf16ps` issues every 16 cycles (3.3 TFLOP/s per core at 3.3 GHz when the
//!   tiles are already loaded), but a `tileloadd` costs about 50 cycles, wherever its 1 KiB
//!   comes from (L1 or L2). With eight tiles, 2×2 C tiles is the blocking with the fewest
//!   loads per product (one), so the kernel is bound by tile loads near 1 TFLOP/s per core,
//!   still several times f32 FMA's 0.2. Anything that adds tile loads (a C tile loaded and
//!   stored per pass over k) costs directly, hence the long passes.
//! - AVX512-BF16: `vdpbf16ps` issues every 2 cycles, half the rate of `vfmadd231ps`, for
//!   twice the flops per lane: no faster than f32 FMA on this core, so here it is a fallback
//!   that saves memory traffic, not time. (Other cores may issue it faster.)
//!
//! Both instructions flush denormal inputs and results to zero, which changes nothing above
//! f32's smallest normal value (1.2·10⁻³⁸).
//!
//! AMX tile registers are per thread and must be configured (`ldtilecfg`) before use, so
//! each task loads the configuration at its start, on whichever rayon worker runs it, and
//! releases the tiles (`tilerelease`) at its end: tile registers are caller-saved under the
//! System V ABI, so they must not be assumed to survive between tasks, and a thread whose
//! tiles are released has no AMX state for the kernel to save on a context switch (which also
//! lets the core sleep deeper). Linux enables AMX for a process only on request (the tile
//! data is 8 KiB of per-thread state): [`bf16_isa`] asks once, with
//! `arch_prctl(ARCH_REQ_XCOMP_PERM)`, before it reports AMX.

use crate::view::View;
use std::sync::OnceLock;

/// The instruction set the bf16 products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bf16Isa {
    Amx,
    Avx512Bf16,
}

impl Bf16Isa {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bf16Isa::Amx => "amx-bf16",
            Bf16Isa::Avx512Bf16 => "avx512-bf16",
        }
    }

    /// Whether this CPU (and OS) can run `self`: a machine with AMX also has AVX512-BF16,
    /// so both can be run and compared there.
    fn available(self) -> bool {
        let found = detected();
        match self {
            Bf16Isa::Amx => found.amx,
            Bf16Isa::Avx512Bf16 => found.avx512bf16,
        }
    }
}

/// What [`detected`] found: each flag includes AVX512F/BW/VL, which the packing uses.
#[derive(Debug, Clone, Copy)]
struct Detected {
    amx: bool,
    avx512bf16: bool,
}

/// The CPU's capabilities, detected on the first call (AMX detection makes a system call)
/// and cached for the process.
fn detected() -> Detected {
    static DETECTED: OnceLock<Detected> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            x86::detect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Detected {
                amx: false,
                avx512bf16: false,
            }
        }
    })
}

/// What this CPU has (detected once, cached): AMX when cpuid says amx-bf16 + amx-tile, the
/// OS enables the tile state (XCR0 bits 17, 18) and Linux grants the permission to use it
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); else AVX512-BF16 when the CPU
/// has avx512bf16 (with avx512f/bw/vl); else `None`. Always `None` off x86_64, and AMX only
/// on Linux (the permission request is Linux's).
pub(crate) fn bf16_isa() -> Option<Bf16Isa> {
    let found = detected();
    if found.amx {
        Some(Bf16Isa::Amx)
    } else if found.avx512bf16 {
        Some(Bf16Isa::Avx512Bf16)
    } else {
        None
    }
}

/// `out` (m×n view) = [`out` +] `a` (m×k) · `b` (k×n), with the inputs rounded to bf16 and
/// the products summed in f32, on `isa`. `accumulate`: add into `out` instead of
/// overwriting it. Runs in parallel on rayon's global pool, one task per output block.
///
/// # Panics
///
/// If the shapes disagree, a view does not fit its slice, two elements of the `out` view
/// share a slot, or `isa` is not available on this CPU.
pub(crate) fn gemm(
    isa: Bf16Isa,
    out: (&mut [f32], View),
    a: (&[f32], View),
    b: (&[f32], View),
    accumulate: bool,
) {
    let ((out, o), (a, av), (b, bv)) = (out, a, b);
    assert!(
        av.rows == o.rows && bv.cols == o.cols && av.cols == bv.rows,
        "bf16 gemm shapes disagree: out {}×{}, a {}×{}, b {}×{}",
        o.rows,
        o.cols,
        av.rows,
        av.cols,
        bv.rows,
        bv.cols
    );
    assert!(
        o.fits(out.len()),
        "out view {o:?} overruns {} values",
        out.len()
    );
    assert!(
        av.fits(a.len()),
        "a view {av:?} overruns {} values",
        a.len()
    );
    assert!(
        bv.fits(b.len()),
        "b view {bv:?} overruns {} values",
        b.len()
    );
    assert!(o.distinct(), "out view {o:?} maps two elements to one slot");
    assert!(
        isa.available(),
        "{} is not available on this CPU",
        isa.name()
    );
    if o.rows == 0 || o.cols == 0 {
        return;
    }
    if av.cols == 0 {
        if !accumulate {
            for i in 0..o.rows {
                for j in 0..o.cols {
                    out[o.at(i, j)] = 0.0;
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    x86::gemm(isa, (out, o), (a, av), (b, bv), accumulate);
}

/// Everything that touches x86 instructions: detection, packing, the two microkernels.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Bf16Isa, Detected, View};
    use rayon::prelude::*;
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::cell::RefCell;
    use std::mem::MaybeUninit;

    /// Rows of an A or C tile, columns of a C or B tile, k-pairs of a B tile.
    const TILE: usize = 16;
    /// Values of k in one tile: 64 bytes of bf16.
    const TILE_K: usize = 32;
    /// bf16 values in one packed 1 KiB tile.
    const TILE_LEN: usize = TILE * TILE_K;
    /// Side of the microkernel's output block: 2×2 C tiles.
    const BLOCK: usize = 2 * TILE;
    /// f32 values in one 32×32 output block of the scratch (four 16×16 tiles, each
    /// row-major and contiguous, in the order C00, C01, C10, C11).
    const BLOCK_LEN: usize = BLOCK * BLOCK;
    /// Rows and columns of C per rayon task (multiples of [`BLOCK`]).
    const MC: usize = 128;
    const NC: usize = 256;
    /// Tiles of k per pass over a task's blocks, at most: 48 · 32 = 1536 values of k, for
    /// which a task's A block (128 rows, 384 KiB of bf16) and B block (256 columns, 768
    /// KiB) stay in a 2 MiB L2 cache. Longer k is cut into equal passes; between passes
    /// the partial sums wait in the scratch.
    const KC: usize = 48;

    pub(super) fn detect() -> Detected {
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        Detected {
            amx: avx512 && amx_usable(),
            avx512bf16: avx512 && is_x86_feature_detected!("avx512bf16"),
        }
    }

    /// AMX needs three yeses: the CPU has it, the OS saves its state on context switches
    /// (XCR0), and the OS lets this process use it.
    fn amx_usable() -> bool {
        if __cpuid(0).eax < 7 {
            return false;
        }
        let leaf7 = __cpuid_count(7, 0);
        let amx_bf16 = leaf7.edx >> 22 & 1 == 1;
        let amx_tile = leaf7.edx >> 24 & 1 == 1;
        let osxsave = __cpuid(1).ecx >> 27 & 1 == 1;
        if !(amx_bf16 && amx_tile && osxsave) {
            return false;
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE says the OS has enabled XSAVE, and with it `xgetbv`.
        let xcr0 = unsafe { _xgetbv(0) };
        let tile_state = 0b11 << 17; // XTILECFG (bit 17) and XTILEDATA (bit 18)
        xcr0 & tile_state == tile_state && request_tile_permission()
    }

    /// Asks Linux for the right to use the 8 KiB of tile data per thread; without it the
    /// first tile instruction kills the process with SIGILL. The grant is process-wide and
    /// asking again is harmless. A raw system call keeps the crate free of a libc binding
    /// for one call.
    #[cfg(target_os = "linux")]
    fn request_tile_permission() -> bool {
        const SYS_ARCH_PRCTL: usize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, n) takes two integers and touches no user
        // memory; the `syscall` instruction clobbers only rax (the result), rcx and r11.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn request_tile_permission() -> bool {
        false
    }

    /// The bits of the bf16 nearest `x` (ties to even; a NaN stays a quiet NaN), as
    /// `half::bf16::from_f32` computes them: adding `0x7fff` plus the lowest kept bit
    /// carries into the kept half exactly when the dropped half is above one half, or
    /// equal to it with the kept half odd.
    pub(super) fn round_bf16(x: f32) -> u16 {
        let bits = x.to_bits();
        if x.is_nan() {
            return (bits >> 16) as u16 | 0x40;
        }
        ((bits + 0x7fff + (bits >> 16 & 1)) >> 16) as u16
    }

    /// [`round_bf16`] on 16 lanes: the bits land in the low half of each 32-bit lane, the
    /// high half is zero.
    #[target_feature(enable = "avx512f")]
    fn round16(x: __m512) -> __m512i {
        let bits = _mm512_castps_si512(x);
        let kept = _mm512_srli_epi32::<16>(bits);
        let bias = _mm512_add_epi32(
            _mm512_and_si512(kept, _mm512_set1_epi32(1)),
            _mm512_set1_epi32(0x7fff),
        );
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, bias));
        let quiet = _mm512_or_si512(kept, _mm512_set1_epi32(0x40));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        _mm512_mask_blend_epi32(nan, rounded, quiet)
    }

    /// `count` (≤ 16) consecutive values of `s` from `start`, zero in the other lanes.
    #[target_feature(enable = "avx512f")]
    fn load16(s: &[f32], start: usize, count: usize) -> __m512 {
        if count == 0 {
            return _mm512_setzero_ps();
        }
        let s = &s[start..start + count];
        let mask = ((1u32 << count) - 1) as u16;
        // SAFETY: the mask enables exactly the `count` lanes that lie in `s`; a masked load
        // does not touch the memory of disabled lanes.
        unsafe { _mm512_maskz_loadu_ps(mask, s.as_ptr()) }
    }

    /// 32 bf16 (the low halves of `lo`'s and then `hi`'s lanes) into one register, in
    /// order: 32 consecutive values of k, i.e. 16 k-pairs.
    #[target_feature(enable = "avx512f")]
    fn concat16(lo: __m512i, hi: __m512i) -> __m512i {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm512_cvtepi32_epi16(lo)),
            _mm512_cvtepi32_epi16(hi),
        )
    }

    /// Lane by lane, the pair `[lo, hi]` of bf16 in one 32-bit lane: the VNNI pair.
    #[target_feature(enable = "avx512f")]
    fn pair(lo: __m512i, hi: __m512i) -> __m512i {
        _mm512_or_si512(lo, _mm512_slli_epi32::<16>(hi))
    }

    /// A vector from its 16 lanes.
    #[target_feature(enable = "avx512f")]
    fn lanes(x: [i32; 16]) -> __m512i {
        // SAFETY: both types are 64 bytes of plain integers; every bit pattern is valid.
        unsafe { std::mem::transmute::<[i32; 16], __m512i>(x) }
    }

    /// The transpose of a 16×16 matrix of 32-bit lanes (`r[i]` is row i), for operands
    /// stored along the "wrong" axis: a column of the source becomes a row of the tile. Four
    /// stages, s = 8, 4, 2, 1: each swaps bit s of the row index with bit s of the column
    /// index (exchanging the off-diagonal s×s blocks of every 2s×2s block), so that after
    /// all four every element (i, j) has moved to (j, i).
    #[target_feature(enable = "avx512f")]
    fn transpose16(mut r: [__m512i; 16]) -> [__m512i; 16] {
        for s in [8, 4, 2, 1] {
            // Lane j of the new row i (bit s of i clear) is r[i][j] or r[i + s][j - s];
            // of the new row i + s, r[i][j + s] or r[i + s][j] (16 + j picks from r[i + s]).
            let low = lanes(std::array::from_fn(|j| {
                (if j & s == 0 { j } else { 16 + j - s }) as i32
            }));
            let high = lanes(std::array::from_fn(|j| {
                (if j & s == 0 { j + s } else { 16 + j }) as i32
            }));
            for i in (0..16).filter(|i| i & s == 0) {
                let (x, y) = (r[i], r[i + s]);
                r[i] = _mm512_permutex2var_epi32(x, low, y);
                r[i + s] = _mm512_permutex2var_epi32(x, high, y);
            }
        }
        r
    }

    /// Writes one 64-byte tile row (32 bf16) at `dst[at..at + 32]`.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn store_row(dst: &mut [MaybeUninit<u16>], at: usize, row: __m512i) {
        let dst = &mut dst[at..at + TILE_K];
        // SAFETY: `dst` holds exactly the 64 bytes written (a store with all 32 lanes on:
        // unlike a plain unaligned store it needs no bounds proof from the compiler).
        unsafe { _mm512_mask_storeu_epi16(dst.as_mut_ptr().cast(), u32::MAX, row) }
    }

    /// Packs the A tile of rows `i0..i0 + 16` and k `k0..k0 + 32` into `dst` (512 bf16,
    /// row-major, k contiguous), zero outside the matrix. Row-major sources are read 32
    /// values of k at a time; column-major ones (a transposed view) 16 rows at a time and
    /// transposed in registers; any other strides element by element.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn pack_a_tile(a: &[f32], v: View, i0: usize, k0: usize, dst: &mut [MaybeUninit<u16>]) {
        let rows = v.rows.saturating_sub(i0).min(TILE);
        let ks = (v.cols - k0).min(TILE_K);
        if v.cs == 1 {
            for r in 0..TILE {
                let (x0, x1) = if r < rows {
                    let start = v.at(i0 + r, k0);
                    (
                        load16(a, start, ks.min(16)),
                        load16(a, start + 16, ks.saturating_sub(16)),
                    )
                } else {
                    (_mm512_setzero_ps(), _mm512_setzero_ps())
                };
                store_row(dst, r * TILE_K, concat16(round16(x0), round16(x1)));
            }
        } else if v.rs == 1 {
            let column = |kk: usize| {
                if kk < ks {
                    round16(load16(a, v.at(i0, k0 + kk), rows))
                } else {
                    _mm512_setzero_si512()
                }
            };
            // pairs[p]: lane i holds row i's k-pair p; the transpose makes lane p of row i.
            let pairs = std::array::from_fn(|p| pair(column(2 * p), column(2 * p + 1)));
            for (r, row) in transpose16(pairs).into_iter().enumerate() {
                store_row(dst, r * TILE_K, row);
            }
        } else {
            for r in 0..TILE {
                for kk in 0..TILE_K {
                    dst[r * TILE_K + kk].write(if r < rows && kk < ks {
                        round_bf16(a[v.at(i0 + r, k0 + kk)])
                    } else {
                        0
                    });
                }
            }
        }
    }

    /// Packs the B tile of k `k0..k0 + 32` and columns `j0..j0 + 16` into `dst` in the VNNI
    /// pair layout (row p: for each column j, `[b[k0 + 2p][j], b[k0 + 2p + 1][j]]`), zero
    /// outside the matrix. Row-major sources pair two rows lane by lane; column-major ones
    /// (a transposed view) read 32 values of k down a column, already in pair order, and
    /// transpose; any other strides go element by element.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn pack_b_tile(b: &[f32], v: View, j0: usize, k0: usize, dst: &mut [MaybeUninit<u16>]) {
        let cols = v.cols.saturating_sub(j0).min(TILE);
        let ks = (v.rows - k0).min(TILE_K);
        if v.cs == 1 {
            let row = |kk: usize| {
                if kk < ks {
                    round16(load16(b, v.at(k0 + kk, j0), cols))
                } else {
                    _mm512_setzero_si512()
                }
            };
            for p in 0..TILE {
                store_row(dst, p * TILE_K, pair(row(2 * p), row(2 * p + 1)));
            }
        } else if v.rs == 1 {
            // columns[j]: lane p holds column j's k-pair p; the transpose makes lane j of
            // row p.
            let columns = std::array::from_fn(|j| {
                if j < cols {
                    let start = v.at(k0, j0 + j);
                    concat16(
                        round16(load16(b, start, ks.min(16))),
                        round16(load16(b, start + 16, ks.saturating_sub(16))),
                    )
                } else {
                    _mm512_setzero_si512()
                }
            });
            for (p, row) in transpose16(columns).into_iter().enumerate() {
                store_row(dst, p * TILE_K, row);
            }
        } else {
            for p in 0..TILE {
                for j in 0..TILE {
                    for h in 0..2 {
                        let kk = 2 * p + h;
                        dst[p * TILE_K + 2 * j + h].write(if j < cols && kk < ks {
                            round_bf16(b[v.at(k0 + kk, j0 + j)])
                        } else {
                            0
                        });
                    }
                }
            }
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Operand {
        A,
        B,
    }

    /// One operand packed: groups of 16 rows of A (or 16 columns of B), an even number of
    /// them (the microkernel takes two), each `kt` tiles of 32 k, contiguous. Tile (g, kb)
    /// starts at `(g·kt + kb)·512`.
    ///
    /// Runs of neighbouring groups are packed in parallel, and the order within a run
    /// follows the source's memory: where the groups' own axis is the contiguous one (B
    /// row-major, A transposed), one row of the source feeds every group of the run, so the
    /// run goes across groups for each tile of k, reading a long contiguous stretch per row;
    /// otherwise (k contiguous) it finishes one group before the next, reading each row of
    /// the source from start to end. Tile by tile in the wrong order, each 64-byte read
    /// would land on another page: the head's weight has 201 KiB between rows.
    ///
    /// The buffer is not zeroed first: every tile packer writes all 512 values of its tile
    /// (padding included), and under an allocator that reuses freed memory (the cli's
    /// mimalloc) zeroing would be a pass over tens of megabytes for the head's weight.
    fn pack(which: Operand, src: &[f32], v: View, kt: usize) -> Vec<u16> {
        let (extent, across) = match which {
            Operand::A => (v.rows, v.rs == 1 && v.cs != 1),
            Operand::B => (v.cols, v.cs == 1),
        };
        let groups = extent.div_ceil(BLOCK) * 2;
        // Long runs for long reads, yet at least four runs per thread to share out.
        let run = (groups / (4 * rayon::current_num_threads())).clamp(1, 16);
        let len = groups * kt * TILE_LEN;
        let mut packed = Vec::with_capacity(len);
        packed.spare_capacity_mut()[..len]
            .par_chunks_mut(run * kt * TILE_LEN)
            .enumerate()
            .for_each(|(r, chunk)| {
                let count = chunk.len() / (kt * TILE_LEN);
                let mut tile = |g: usize, kb: usize| {
                    let dst = &mut chunk[(g * kt + kb) * TILE_LEN..][..TILE_LEN];
                    let (outer, k0) = ((r * run + g) * TILE, kb * TILE_K);
                    // SAFETY: `gemm` only runs where the ISA is available, and both ISAs
                    // are detected only together with avx512f and avx512bw.
                    unsafe {
                        match which {
                            Operand::A => pack_a_tile(src, v, outer, k0, dst),
                            Operand::B => pack_b_tile(src, v, outer, k0, dst),
                        }
                    }
                };
                if across {
                    (0..kt).for_each(|kb| (0..count).for_each(|g| tile(g, kb)));
                } else {
                    (0..count).for_each(|g| (0..kt).for_each(|kb| tile(g, kb)));
                }
            });
        // SAFETY: the loops above wrote all `len` values (see the doc comment).
        unsafe { packed.set_len(len) };
        packed
    }

    /// The 64-byte tile configuration: palette 1, and all eight tiles 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    static TILE_CONFIG: TileConfig = TileConfig({
        let mut cfg = [0u8; 64];
        cfg[0] = 1; // palette 1; byte 1 (start row, for restarting a faulted load) stays 0
        let mut t = 0;
        while t < 8 {
            cfg[16 + 2 * t] = 64; // colsb[t]: bytes per row (u16, little-endian)
            cfg[48 + t] = TILE as u8; // rows[t]
            t += 1;
        }
        cfg
    });

    /// The tiles of this thread, configured for the microkernel while the guard lives;
    /// dropping it releases them (also when a task panics).
    struct Tiles;

    impl Tiles {
        /// # Safety
        ///
        /// AMX must be available ([`Bf16Isa::Amx`]'s detection).
        unsafe fn configure() -> Tiles {
            // SAFETY: AMX is available (the caller's promise); `ldtilecfg` reads the 64
            // bytes of the static configuration.
            unsafe { asm!("ldtilecfg [{}]", in(reg) &TILE_CONFIG.0, options(nostack)) };
            Tiles
        }
    }

    impl Drop for Tiles {
        fn drop(&mut self) {
            // SAFETY: a `Tiles` exists only where AMX is available; `tilerelease` returns
            // the tiles to their initial state and touches no memory.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }

    /// The AMX microkernel: the 32×32 block `c` (four 16×16 tiles) = [`c` +] the A group
    /// pair × the B group pair over `nk` tiles of k. `a` starts at the first A group's
    /// first tile, the second group is `stride` values further (likewise `b`); `first`
    /// starts from zero instead of the partial sums in `c`. The whole loop is one `asm!`
    /// block, so no compiler-generated code runs while the tiles hold live values.
    ///
    /// # Safety
    ///
    /// The tile configuration must be loaded on this thread (a live [`Tiles`]).
    unsafe fn amx_kernel(
        c: &mut [f32],
        a: &[u16],
        b: &[u16],
        stride: usize,
        nk: usize,
        first: bool,
    ) {
        let span = stride + nk * TILE_LEN;
        assert!(nk > 0 && c.len() >= BLOCK_LEN && a.len() >= span && b.len() >= span);
        // SAFETY: the tiles are configured (the caller's promise) as 16 rows × 64 bytes, so
        // each load or store with a row stride of 64 touches 1 KiB: the C tiles lie in the
        // first 4 KiB of `c`, and the loop reads tiles 0..nk of each group, inside `a` and
        // `b` (checked above).
        unsafe {
            asm!(
                "test {first}, {first}",
                "jz 2f",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "jmp 3f",
                "2:",
                "tileloadd tmm0, [{c} + {s}*1]",
                "tileloadd tmm1, [{c} + {s}*1 + 1024]",
                "tileloadd tmm2, [{c} + {s}*1 + 2048]",
                "tileloadd tmm3, [{c} + {s}*1 + 3072]",
                "3:",
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 1024",
                "add {a1}, 1024",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {nk}",
                "jnz 3b",
                "tilestored [{c} + {s}*1], tmm0",
                "tilestored [{c} + {s}*1 + 1024], tmm1",
                "tilestored [{c} + {s}*1 + 2048], tmm2",
                "tilestored [{c} + {s}*1 + 3072], tmm3",
                first = in(reg) usize::from(first),
                c = in(reg) c.as_mut_ptr(),
                s = in(reg) 64usize,
                a0 = inout(reg) a.as_ptr() => _,
                a1 = inout(reg) a.as_ptr().add(stride) => _,
                b0 = inout(reg) b.as_ptr() => _,
                b1 = inout(reg) b.as_ptr().add(stride) => _,
                nk = inout(reg) nk => _,
                options(nostack),
            );
        }
    }

    /// The AVX512-BF16 microkernel, on the same operands as [`amx_kernel`]: the 32×32 block
    /// in four slabs of 8 rows × 32 columns, 16 zmm accumulators each (two per row: the C
    /// tiles' rows r of tile columns 0 and 1). Per k-pair it loads the pair row of each B
    /// group (32 columns of pairs) and broadcasts each row's A pair to all 16 lanes; the B
    /// strip of one pass stays in L1/L2 across the four slabs. Written in assembly, like the
    /// AMX kernel, so that the accumulators stay in registers whatever the build profile.
    ///
    /// # Safety
    ///
    /// The CPU must have avx512bf16 and avx512f.
    unsafe fn avx_kernel(
        c: &mut [f32],
        a: &[u16],
        b: &[u16],
        stride: usize,
        nk: usize,
        first: bool,
    ) {
        let span = stride + nk * TILE_LEN;
        assert!(nk > 0 && c.len() >= BLOCK_LEN && a.len() >= span && b.len() >= span);
        const SLAB: usize = 8;
        for slab in 0..BLOCK / SLAB {
            let (ti, r0) = (slab * SLAB / TILE, slab * SLAB % TILE);
            // SAFETY: the CPU has the instructions (the caller's promise). The slab's rows of
            // C tiles (ti, 0) and (ti, 1) are 8 rows of 64 bytes from
            // `c[(2·ti·16 + r0)·16..]`, and 1 KiB further, inside the 4 KiB block. Its
            // rows of A are 8 rows of 64 bytes in each of the nk tiles of group ti (the
            // loop steps 4 bytes per pair and 1 KiB per tile); the pair rows of B are nk ·
            // 16 consecutive 64-byte rows of each group. All inside `a` and `b` (checked
            // above).
            unsafe {
                asm!(
                    "test {first}, {first}",
                    "jz 2f",
                    "vpxord zmm0, zmm0, zmm0",
                    "vpxord zmm1, zmm1, zmm1",
                    "vpxord zmm2, zmm2, zmm2",
                    "vpxord zmm3, zmm3, zmm3",
                    "vpxord zmm4, zmm4, zmm4",
                    "vpxord zmm5, zmm5, zmm5",
                    "vpxord zmm6, zmm6, zmm6",
                    "vpxord zmm7, zmm7, zmm7",
                    "vpxord zmm8, zmm8, zmm8",
                    "vpxord zmm9, zmm9, zmm9",
                    "vpxord zmm10, zmm10, zmm10",
                    "vpxord zmm11, zmm11, zmm11",
                    "vpxord zmm12, zmm12, zmm12",
                    "vpxord zmm13, zmm13, zmm13",
                    "vpxord zmm14, zmm14, zmm14",
                    "vpxord zmm15, zmm15, zmm15",
                    "jmp 3f",
                    "2:",
                    "vmovups zmm0, [{c} + 0]",
                    "vmovups zmm1, [{c} + 1024]",
                    "vmovups zmm2, [{c} + 64]",
                    "vmovups zmm3, [{c} + 1088]",
                    "vmovups zmm4, [{c} + 128]",
                    "vmovups zmm5, [{c} + 1152]",
                    "vmovups zmm6, [{c} + 192]",
                    "vmovups zmm7, [{c} + 1216]",
                    "vmovups zmm8, [{c} + 256]",
                    "vmovups zmm9, [{c} + 1280]",
                    "vmovups zmm10, [{c} + 320]",
                    "vmovups zmm11, [{c} + 1344]",
                    "vmovups zmm12, [{c} + 384]",
                    "vmovups zmm13, [{c} + 1408]",
                    "vmovups zmm14, [{c} + 448]",
                    "vmovups zmm15, [{c} + 1472]",
                    "3:",
                    "mov {q}, 16",
                    "4:",
                    "vmovups zmm16, [{b0}]",
                    "vmovups zmm17, [{b1}]",
                    "vpbroadcastd zmm18, dword ptr [{a} + 0]",
                    "vdpbf16ps zmm0, zmm18, zmm16",
                    "vdpbf16ps zmm1, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 64]",
                    "vdpbf16ps zmm2, zmm18, zmm16",
                    "vdpbf16ps zmm3, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 128]",
                    "vdpbf16ps zmm4, zmm18, zmm16",
                    "vdpbf16ps zmm5, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 192]",
                    "vdpbf16ps zmm6, zmm18, zmm16",
                    "vdpbf16ps zmm7, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 256]",
                    "vdpbf16ps zmm8, zmm18, zmm16",
                    "vdpbf16ps zmm9, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 320]",
                    "vdpbf16ps zmm10, zmm18, zmm16",
                    "vdpbf16ps zmm11, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 384]",
                    "vdpbf16ps zmm12, zmm18, zmm16",
                    "vdpbf16ps zmm13, zmm18, zmm17",
                    "vpbroadcastd zmm18, dword ptr [{a} + 448]",
                    "vdpbf16ps zmm14, zmm18, zmm16",
                    "vdpbf16ps zmm15, zmm18, zmm17",
                    "add {a}, 4",
                    "add {b0}, 64",
                    "add {b1}, 64",
                    "dec {q}",
                    "jnz 4b",
                    "add {a}, 960",
                    "dec {nk}",
                    "jnz 3b",
                    "vmovups [{c} + 0], zmm0",
                    "vmovups [{c} + 1024], zmm1",
                    "vmovups [{c} + 64], zmm2",
                    "vmovups [{c} + 1088], zmm3",
                    "vmovups [{c} + 128], zmm4",
                    "vmovups [{c} + 1152], zmm5",
                    "vmovups [{c} + 192], zmm6",
                    "vmovups [{c} + 1216], zmm7",
                    "vmovups [{c} + 256], zmm8",
                    "vmovups [{c} + 1280], zmm9",
                    "vmovups [{c} + 320], zmm10",
                    "vmovups [{c} + 1344], zmm11",
                    "vmovups [{c} + 384], zmm12",
                    "vmovups [{c} + 1408], zmm13",
                    "vmovups [{c} + 448], zmm14",
                    "vmovups [{c} + 1472], zmm15",
                    first = in(reg) usize::from(first),
                    c = in(reg) c.as_mut_ptr().add((2 * ti * TILE + r0) * TILE),
                    a = inout(reg) a.as_ptr().add(ti * stride + r0 * TILE_K) => _,
                    b0 = inout(reg) b.as_ptr() => _,
                    b1 = inout(reg) b.as_ptr().add(stride) => _,
                    nk = inout(reg) nk => _,
                    q = out(reg) _,
                    out("zmm0") _,
                    out("zmm1") _,
                    out("zmm2") _,
                    out("zmm3") _,
                    out("zmm4") _,
                    out("zmm5") _,
                    out("zmm6") _,
                    out("zmm7") _,
                    out("zmm8") _,
                    out("zmm9") _,
                    out("zmm10") _,
                    out("zmm11") _,
                    out("zmm12") _,
                    out("zmm13") _,
                    out("zmm14") _,
                    out("zmm15") _,
                    out("zmm16") _,
                    out("zmm17") _,
                    out("zmm18") _,
                    options(nostack),
                );
            }
        }
    }

    /// The output's base pointer, shared by the tasks. Each task writes only its own block
    /// of the view, and [`View::distinct`] was checked, so no element is written twice.
    #[derive(Clone, Copy)]
    struct OutPtr(*mut f32);

    // SAFETY: the tasks write disjoint elements (see above) and nothing reads them meanwhile.
    unsafe impl Send for OutPtr {}
    // SAFETY: as for `Send`.
    unsafe impl Sync for OutPtr {}

    impl OutPtr {
        /// The pointer. Closures call this instead of reading `.0`, which would capture
        /// the bare (non-`Sync`) pointer field rather than the wrapper.
        fn get(self) -> *mut f32 {
            self.0
        }
    }

    thread_local! {
        /// Each worker's f32 partial sums for its current task ([`MC`] × [`NC`], 128 KiB),
        /// kept across tasks so that no task pays for a fresh allocation's page faults.
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// What every task shares.
    struct Job<'a> {
        isa: Bf16Isa,
        ap: &'a [u16],
        bp: &'a [u16],
        /// Tiles of k.
        kt: usize,
        out: OutPtr,
        o: View,
        accumulate: bool,
        /// Write the output with streaming stores (see [`stream_copy`]).
        stream: bool,
    }

    impl Job<'_> {
        /// One task: the output block of rows `i0..i0 + rows`, columns `j0..j0 + cols`.
        fn block(&self, i0: usize, rows: usize, j0: usize, cols: usize) {
            let (mb, nb) = (rows.div_ceil(BLOCK), cols.div_ceil(BLOCK));
            let stride = self.kt * TILE_LEN;
            SCRATCH.with_borrow_mut(|scratch| {
                if scratch.len() < mb * nb * BLOCK_LEN {
                    scratch.resize(mb * nb * BLOCK_LEN, 0.0);
                }
                // SAFETY: `gemm` only runs an available ISA.
                let _tiles = (self.isa == Bf16Isa::Amx).then(|| unsafe { Tiles::configure() });
                let pass = self.kt.div_ceil(self.kt.div_ceil(KC));
                for k0 in (0..self.kt).step_by(pass) {
                    let nk = pass.min(self.kt - k0);
                    for bj in 0..nb {
                        let b = &self.bp[((j0 / TILE + 2 * bj) * self.kt + k0) * TILE_LEN..];
                        for bi in 0..mb {
                            let a = &self.ap[((i0 / TILE + 2 * bi) * self.kt + k0) * TILE_LEN..];
                            let c = &mut scratch[(bj * mb + bi) * BLOCK_LEN..][..BLOCK_LEN];
                            match self.isa {
                                // SAFETY: `_tiles` holds this thread's tile configuration.
                                Bf16Isa::Amx => unsafe { amx_kernel(c, a, b, stride, nk, k0 == 0) },
                                // SAFETY: the ISA is available (avx512bf16 with avx512f).
                                Bf16Isa::Avx512Bf16 => unsafe {
                                    avx_kernel(c, a, b, stride, nk, k0 == 0)
                                },
                            }
                        }
                    }
                }
                self.write_back(scratch, mb, i0, rows, j0, cols);
            });
        }

        /// Copies (or adds) the valid part of the task's scratch blocks into the output, row
        /// by row: each row is gathered from its tiles into a contiguous line first.
        fn write_back(
            &self,
            scratch: &[f32],
            mb: usize,
            i0: usize,
            rows: usize,
            j0: usize,
            cols: usize,
        ) {
            let o = self.o;
            let mut line = [0.0f32; NC];
            for i in 0..rows {
                let (bi, ti, r) = (i / BLOCK, i % BLOCK / TILE, i % TILE);
                for j in (0..cols).step_by(TILE) {
                    let (bj, tj) = (j / BLOCK, j % BLOCK / TILE);
                    let at = (bj * mb + bi) * BLOCK_LEN + (2 * ti + tj) * TILE * TILE + r * TILE;
                    let w = TILE.min(cols - j);
                    line[j..j + w].copy_from_slice(&scratch[at..][..w]);
                }
                let line = &line[..cols];
                let start = o.at(i0 + i, j0);
                if o.cs == 1 {
                    // SAFETY: the view fits the output slice (checked in `gemm`), so the
                    // row's `cols` consecutive elements are inside it, and no other task
                    // touches them.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(self.out.get().add(start), cols) };
                    if self.accumulate {
                        dst.iter_mut().zip(line).for_each(|(d, s)| *d += s);
                    } else if self.stream {
                        // SAFETY: `stream` is set only where the ISA is available, which
                        // includes avx512f.
                        unsafe { stream_copy(dst, line) };
                    } else {
                        dst.copy_from_slice(line);
                    }
                } else {
                    for (x, &s) in line.iter().enumerate() {
                        // SAFETY: as above, for the single element (i, j0 + x).
                        let d = unsafe { &mut *self.out.get().add(start + x * o.cs) };
                        *d = if self.accumulate { *d + s } else { s };
                    }
                }
            }
            if self.stream {
                // SAFETY: every x86_64 CPU has SSE. Streaming stores are weakly ordered:
                // the fence makes them visible before the task reports itself done, as
                // `_mm512_stream_ps` requires before anyone else reads the memory.
                unsafe { _mm_sfence() };
            }
        }
    }

    /// Outputs at least this large are written with streaming stores: bigger than what the
    /// caches would keep for the next operation to read, so caching them only costs.
    const STREAM_BYTES: usize = 4 << 20;

    /// `dst.copy_from_slice(src)` with streaming (non-temporal) stores for the whole
    /// 64-byte lines of `dst`. A plain store to a line that is not in cache first reads the
    /// line from memory ("read for ownership") only to overwrite all of it; a streaming
    /// store writes the line without reading it, halving the memory traffic of an output
    /// that is too big to stay in cache anyway (the head's logits are 206 MB). The partial
    /// lines at either end are stored normally, since a neighbouring task may write the
    /// rest of them.
    ///
    /// # Safety
    ///
    /// The CPU must have avx512f, and the caller must `_mm_sfence` before the stores are
    /// read by another thread.
    #[target_feature(enable = "avx512f")]
    unsafe fn stream_copy(dst: &mut [f32], src: &[f32]) {
        assert_eq!(dst.len(), src.len());
        let head = dst.as_ptr().align_offset(64).min(dst.len());
        let body = head + (dst.len() - head) / 16 * 16;
        dst[..head].copy_from_slice(&src[..head]);
        for x in (head..body).step_by(16) {
            let v = load16(src, x, 16);
            // SAFETY: `dst[x..x + 16]` lies inside `dst` (x + 16 ≤ body ≤ len) and starts on
            // a 64-byte boundary (head is the first one, and x steps by 64 bytes).
            unsafe { _mm512_stream_ps(dst.as_mut_ptr().add(x), v) };
        }
        dst[body..].copy_from_slice(&src[body..]);
    }

    /// [`super::gemm`] after its checks, with m, n, k > 0.
    pub(super) fn gemm(
        isa: Bf16Isa,
        (out, o): (&mut [f32], View),
        (a, av): (&[f32], View),
        (b, bv): (&[f32], View),
        accumulate: bool,
    ) {
        let (m, n) = (o.rows, o.cols);
        let kt = av.cols.div_ceil(TILE_K);
        let ap = pack(Operand::A, a, av, kt);
        let bp = pack(Operand::B, b, bv, kt);
        let job = Job {
            isa,
            ap: &ap,
            bp: &bp,
            kt,
            out: OutPtr(out.as_mut_ptr()),
            o,
            accumulate,
            stream: !accumulate && o.cs == 1 && m * n * size_of::<f32>() >= STREAM_BYTES,
        };
        // Tasks go down a column of blocks first: rayon hands each thread a run of
        // consecutive tasks, which then share one B block (NC columns, 384 KiB at k = 768)
        // in that core's L2. B is the larger operand of the wide products (the head's
        // weight is 77 MiB in bf16): going along rows first would stream all of it from
        // memory once per row of blocks.
        let (mt, nt) = (m.div_ceil(MC), n.div_ceil(NC));
        (0..mt * nt).into_par_iter().for_each(|t| {
            let (i0, j0) = (t % mt * MC, t / mt * NC);
            job.block(i0, MC.min(m - i0), j0, NC.min(n - j0));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::nearest_bf16;
    use rand::{Rng, SeedableRng};

    /// The ISAs this machine can run, each tested on its own.
    fn isas() -> Vec<Bf16Isa> {
        let found: Vec<_> = [Bf16Isa::Amx, Bf16Isa::Avx512Bf16]
            .into_iter()
            .filter(|isa| {
                let ok = isa.available();
                if !ok {
                    eprintln!("skipping {}: not available on this CPU", isa.name());
                }
                ok
            })
            .collect();
        found
    }

    /// The value of the bf16 nearest `x`, for the f64 reference.
    fn bf16(x: f32) -> f64 {
        f64::from(nearest_bf16(x))
    }

    /// How a test matrix lies in its slice.
    #[derive(Debug, Clone, Copy)]
    enum Layout {
        RowMajor,
        /// Column-major: the view of a transposed matrix (rs = 1).
        Transposed,
        /// Row-major inside a larger buffer: an offset and padded rows.
        Offset,
        /// Neither stride 1: the element-by-element packing.
        Strided,
    }

    const LAYOUTS: [Layout; 4] = [
        Layout::RowMajor,
        Layout::Transposed,
        Layout::Offset,
        Layout::Strided,
    ];

    fn view(rows: usize, cols: usize, layout: Layout) -> View {
        let (offset, rs, cs) = match layout {
            Layout::RowMajor => (0, cols, 1),
            Layout::Transposed => (0, 1, rows),
            Layout::Offset => (5, cols + 3, 1),
            Layout::Strided => (2, 2 * cols + 1, 2),
        };
        View {
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A slice of uniform values in [-1, 1) that holds `v` (and stray values around it).
    fn filled(v: View, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
        let len = v.offset + v.rows * v.rs.max(1) + v.cols * v.cs.max(1) + 3;
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Runs one product on `isa` and checks every element of `out` against the f64
    /// product of the bf16-rounded inputs; elements outside the view must be untouched.
    fn check(
        isa: Bf16Isa,
        (m, k, n): (usize, usize, usize),
        la: Layout,
        lb: Layout,
        lo: Layout,
        accumulate: bool,
    ) {
        let mut rng = rand::rngs::StdRng::seed_from_u64((m * 7919 + k * 31 + n) as u64);
        let (av, bv, ov) = (view(m, k, la), view(k, n, lb), view(m, n, lo));
        let (a, b) = (filled(av, &mut rng), filled(bv, &mut rng));
        let before = filled(ov, &mut rng);
        let mut out = before.clone();
        gemm(isa, (&mut out, ov), (&a, av), (&b, bv), accumulate);
        let mut inside = vec![false; out.len()];
        let (max_a, max_b) = (1.0, 1.0);
        for i in 0..m {
            for j in 0..n {
                let mut want: f64 = (0..k)
                    .map(|kk| bf16(a[av.at(i, kk)]) * bf16(b[bv.at(kk, j)]))
                    .sum();
                if accumulate {
                    want += f64::from(before[ov.at(i, j)]);
                }
                let got = f64::from(out[ov.at(i, j)]);
                let tol = 1e-6 * (k as f64 + 2.0) * max_a * max_b;
                assert!(
                    (got - want).abs() <= tol,
                    "{} {m}×{k}×{n} a {la:?} b {lb:?} out {lo:?} accumulate {accumulate}: \
                     out[{i}][{j}] = {got}, want {want}",
                    isa.name()
                );
                inside[ov.at(i, j)] = true;
            }
        }
        for (x, (&got, &was)) in out.iter().zip(&before).enumerate() {
            assert!(
                inside[x] || got == was,
                "{}: wrote outside the out view at {x}",
                isa.name()
            );
        }
    }

    /// Edges in every dimension; k = 600 takes one pass over k, k = 3100 three (see `KC`).
    const SHAPES: [(usize, usize, usize); 10] = [
        (1, 1, 1),
        (0, 5, 3),
        (4, 0, 3),
        (4, 5, 0),
        (15, 17, 33),
        (31, 33, 65),
        (100, 37, 300),
        (257, 129, 64),
        (33, 600, 47),
        (37, 3100, 45),
    ];

    #[test]
    fn matches_reference_for_every_layout() {
        for isa in isas() {
            for shape in SHAPES {
                for la in LAYOUTS {
                    for lb in LAYOUTS {
                        for accumulate in [false, true] {
                            check(isa, shape, la, lb, Layout::RowMajor, accumulate);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn honours_the_output_strides() {
        for isa in isas() {
            for shape in [(15, 17, 33), (100, 37, 300), (257, 129, 64)] {
                for lo in LAYOUTS {
                    for accumulate in [false, true] {
                        check(
                            isa,
                            shape,
                            Layout::RowMajor,
                            Layout::RowMajor,
                            lo,
                            accumulate,
                        );
                    }
                }
            }
        }
    }

    /// An output of more than 4 MiB is written with streaming stores: row-major, and at an
    /// offset with padded rows (so that rows start off 64-byte lines), both `accumulate`s.
    #[test]
    fn streams_large_outputs() {
        for isa in isas() {
            for lo in [Layout::RowMajor, Layout::Offset] {
                for accumulate in [false, true] {
                    check(
                        isa,
                        (1100, 40, 1001),
                        Layout::RowMajor,
                        Layout::RowMajor,
                        lo,
                        accumulate,
                    );
                }
            }
        }
    }

    /// The zero-k product is zero, or leaves `out` as it was when accumulating.
    #[test]
    fn empty_k_zeroes_or_keeps_out() {
        for isa in isas() {
            let (av, bv, ov) = (
                view(3, 0, Layout::RowMajor),
                view(0, 4, Layout::RowMajor),
                view(3, 4, Layout::RowMajor),
            );
            let mut out = vec![2.5; 12];
            gemm(isa, (&mut out, ov), (&[], av), (&[], bv), true);
            assert_eq!(out, vec![2.5; 12]);
            gemm(isa, (&mut out, ov), (&[], av), (&[], bv), false);
            assert_eq!(out, vec![0.0; 12]);
        }
    }

    /// Rounding to nearest, ties to even, on every packing path of both operands: `x` times
    /// the identity (and the identity times `x`) gives back the rounded `x`.
    #[test]
    fn rounds_inputs_to_nearest_even() {
        let one = 1.0f32;
        let cases = [
            (one + 2f32.powi(-8), 1.0), // tie, kept half even: down
            (one + 3.0 * 2f32.powi(-9), 1.0 + 2f64.powi(-7)), // above the tie: up
            (one + 2f32.powi(-7) + 2f32.powi(-8), 1.0 + 2f64.powi(-6)), // tie, odd: up
            (one + 2f32.powi(-9), 1.0), // below the tie: down
            (-(one + 3.0 * 2f32.powi(-9)), -(1.0 + 2f64.powi(-7))),
            (0.1, f64::from(f32::from_bits(0x3dcd_0000))),
        ];
        let k = cases.len();
        let identity: Vec<f32> = (0..k * k)
            .map(|x| if x % (k + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        let row: Vec<f32> = cases.iter().map(|c| c.0).collect();
        for isa in isas() {
            for layout in LAYOUTS {
                // x (1×k) · I, with x in every layout of A.
                let av = view(1, k, layout);
                let mut a = vec![0.0; av.offset + av.rs + k * av.cs + 1];
                for (kk, &x) in row.iter().enumerate() {
                    a[av.at(0, kk)] = x;
                }
                let mut out = vec![0.0; k];
                let (iv, ov) = (view(k, k, Layout::RowMajor), view(1, k, Layout::RowMajor));
                gemm(isa, (&mut out, ov), (&a, av), (&identity, iv), false);
                // I · xᵀ (k×1), with xᵀ in every layout of B.
                let bv = view(k, 1, layout);
                let mut b = vec![0.0; bv.offset + k * bv.rs + bv.cs + 1];
                for (kk, &x) in row.iter().enumerate() {
                    b[bv.at(kk, 0)] = x;
                }
                let mut out_t = vec![0.0; k];
                gemm(
                    isa,
                    (&mut out_t, view(k, 1, Layout::RowMajor)),
                    (&identity, iv),
                    (&b, bv),
                    false,
                );
                for (x, &(input, want)) in cases.iter().enumerate() {
                    for (side, got) in [("a", out[x]), ("b", out_t[x])] {
                        assert_eq!(
                            f64::from(got),
                            want,
                            "{} {layout:?} {side}: {input} rounded to {got}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    /// NaN stays NaN, infinity stays infinite, and the largest f32 rounds up to infinity
    /// (as a cast to bf16 does), on the vector and element-by-element packings.
    #[test]
    fn keeps_special_values() {
        let cases = [
            (f32::NAN, f32::NAN),
            (f32::INFINITY, f32::INFINITY),
            (f32::NEG_INFINITY, f32::NEG_INFINITY),
            (f32::MAX, f32::INFINITY),
            (0.0, 0.0),
        ];
        for isa in isas() {
            for layout in [Layout::RowMajor, Layout::Strided] {
                for (x, want) in cases {
                    let v = view(1, 1, layout);
                    let mut a = vec![0.0; v.offset + 1];
                    a[v.offset] = x;
                    let one = vec![1.0; v.offset + 1];
                    for (a_side, b_side) in [(&a, &one), (&one, &a)] {
                        let mut out = [7.0];
                        gemm(
                            isa,
                            (&mut out, view(1, 1, Layout::RowMajor)),
                            (a_side, v),
                            (b_side, v),
                            false,
                        );
                        assert!(
                            out[0] == want || (out[0].is_nan() && want.is_nan()),
                            "{} {layout:?}: {x} gave {}",
                            isa.name(),
                            out[0]
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "shapes disagree")]
    fn rejects_mismatched_shapes() {
        let isa = bf16_isa().unwrap_or(Bf16Isa::Avx512Bf16);
        let mut out = vec![0.0; 4];
        gemm(
            isa,
            (&mut out, view(2, 2, Layout::RowMajor)),
            (&[0.0; 6], view(2, 3, Layout::RowMajor)),
            (&[0.0; 4], view(2, 2, Layout::RowMajor)),
            false,
        );
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn rejects_a_view_past_its_slice() {
        let isa = bf16_isa().unwrap_or(Bf16Isa::Avx512Bf16);
        let mut out = vec![0.0; 4];
        gemm(
            isa,
            (&mut out, view(2, 2, Layout::RowMajor)),
            (&[0.0; 3], view(2, 2, Layout::RowMajor)),
            (&[0.0; 4], view(2, 2, Layout::RowMajor)),
            false,
        );
    }

    /// GFLOP/s on the matmul shapes of GPT-2 124M training with 1024 rows, on each ISA and
    /// for the f32 `gemm` crate. `cargo test -p model --lib bf16_gemm -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn benchmark() {
        use Layout::{RowMajor as R, Transposed as T};
        use std::time::{Duration, Instant};
        // (name, m, k, n, layout of a, layout of b)
        let shapes = [
            ("qkv      x·W", 1024, 768, 2304, R, R),
            ("mlp up   x·W", 1024, 768, 3072, R, R),
            ("mlp down x·W", 1024, 3072, 768, R, R),
            ("lm head  x·W", 1024, 768, 50304, R, R),
            ("dx = dy·Wᵀ", 1024, 3072, 768, R, T),
            ("dW = xᵀ·dy", 768, 1024, 3072, T, R),
        ];
        /// The best of several runs, at least 3 and about a second in all.
        fn gflops(flops: f64, mut run: impl FnMut()) -> f64 {
            run();
            let (mut best, mut total, mut runs) = (Duration::MAX, Duration::ZERO, 0);
            while runs < 3 || total < Duration::from_secs(1) {
                let start = Instant::now();
                run();
                let took = start.elapsed();
                best = best.min(took);
                total += took;
                runs += 1;
            }
            flops / best.as_secs_f64() / 1e9
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        eprintln!("{} rayon threads", rayon::current_num_threads());
        eprint!(
            "{:<14} {:>5} {:>5} {:>6} {:>10}",
            "shape", "m", "k", "n", "f32 gemm"
        );
        let isas = isas();
        for isa in &isas {
            eprint!(" {:>12}", isa.name());
        }
        eprintln!("   (GFLOP/s)");
        for (name, m, k, n, la, lb) in shapes {
            let (av, bv, ov) = (view(m, k, la), view(k, n, lb), view(m, n, R));
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut out = vec![0.0f32; m * n];
            let flops = 2.0 * (m * n * k) as f64;
            let f32_rate = gflops(flops, || {
                // SAFETY: the views lie inside their slices, which do not overlap.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr(),
                        ov.cs as isize,
                        ov.rs as isize,
                        false,
                        a.as_ptr(),
                        av.cs as isize,
                        av.rs as isize,
                        b.as_ptr(),
                        bv.cs as isize,
                        bv.rs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
                    )
                }
            });
            eprint!("{name:<14} {m:>5} {k:>5} {n:>6} {f32_rate:>10.0}");
            for &isa in &isas {
                let rate = gflops(flops, || {
                    gemm(isa, (&mut out, ov), (&a, av), (&b, bv), false)
                });
                eprint!(" {rate:>12.0}");
            }
            eprintln!();
        }
    }
}
