//! `a @ b` with both operands rounded to bf16 and the products summed in f32, on AVX-512
//! BF16's `vdpbf16ps` (AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and
//! later): twice the multiply-adds a cycle of f32 FMAs. [`super::linear`] runs the linear
//! layers on it under [`super::linear::MatmulPrecision::Bf16`].
//!
//! Laid out as BLIS does, for `c[m, n] = a[m, k] · b[k, n]`: `a` packed into panels of
//! [`MR`] rows and `b` into panels of [`NR`] columns, each of `u32`s that hold two bf16 of
//! adjacent `k` (the operand `vdpbf16ps` multiplies pairwise), `b`'s as `[k pair][column]`,
//! `a`'s as `[k pair][row]` or, when its rows run along `k`, as `[row][k pair]`.
//! The micro-kernel keeps an `MR × NR` block of `c` in 24 registers and adds, per `k` pair,
//! `MR` broadcasts of `a` times two vectors of `b`. `a` is packed once, first; each task
//! packs its own panel of `b` (hot when used) and runs it against a run of `a`'s panels. An
//! operand used in many products is packed once beforehand instead ([`PackedB`]: the weights,
//! through [`super::packed_weights`], and attention's k and v), and attention's softmax rows
//! are written as bf16 straight from the exponentials ([`exp_rows_times`]).

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::avx512::mask;
use super::linear::MatRef;

/// Rows of `c` per micro-kernel block.
const MR: usize = 12;
/// Columns of `c` per micro-kernel block: two vectors of 16 f32.
const NR: usize = 32;

/// Whether this CPU has AVX-512 BF16 (and the AVX-512F it builds on).
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// `c = alpha · a @ b` into rows of stride `ldc`, operands rounded to bf16 (nearest, ties to
/// even), products summed in f32. `parallel`: spread over rayon's threads.
///
/// # Safety
/// The CPU must have AVX-512 BF16 ([`available`]); `a.cols == b.rows > 0`, both operands
/// inside their buffers ([`MatRef::in_bounds`]; [`super::linear::matmul_into`] checks all
/// of this); `c` must have room for `a.rows` rows of `b.cols` values at stride
/// `ldc ≥ b.cols`, which nothing else reads or writes meanwhile; all of them are written.
pub(crate) unsafe fn gemm(a: MatRef<'_>, b: MatRef<'_>, alpha: f32, c: *mut f32, ldc: usize, parallel: bool) {
    // SAFETY: the caller's promise, passed on.
    unsafe { gemm_of(Left::Plain(a), Right::Plain(b), alpha, c, ldc, parallel) }
}

/// `b` packed once for any number of [`gemm_packed`] products: its [`NR`]-column panels as
/// `gemm` packs them, so that an operand used again and again (a weight, attention's k and v)
/// is converted once, not once per product.
#[derive(Debug)]
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    /// `n.div_ceil(NR)` panels of `k.div_ceil(2) × NR` words.
    panels: Vec<u32>,
}

impl PackedB {
    /// `b` (`k × n`, any strides inside its buffer, `k > 0`) packed, spread over rayon's
    /// threads with `parallel`.
    ///
    /// # Panics
    /// If `k` is 0 or `b` reaches past its buffer.
    pub(crate) fn new(b: MatRef<'_>, parallel: bool) -> PackedB {
        assert!(available(), "bf16 packing needs AVX-512 BF16");
        assert!(b.rows > 0 && b.in_bounds(), "a packed operand needs k > 0 inside its buffer");
        let (k, n) = (b.rows, b.cols);
        let pairs = k.div_ceil(2);
        let lines = Lines::columns_of(b);
        let count = n.div_ceil(NR);
        let mut panels: Vec<u32> = Vec::with_capacity(count * pairs * NR);
        let pack = |(q, panel): (usize, &mut [std::mem::MaybeUninit<u32>])| {
            // SAFETY: AVX-512 BF16 is there (asserted above); `panel` holds `pairs × NR`.
            unsafe { pack_panel(lines, q * NR, NR, pairs, panel) }
        };
        if parallel {
            panels.spare_capacity_mut().par_chunks_mut(pairs * NR).enumerate().for_each(pack);
        } else {
            panels.spare_capacity_mut().chunks_mut(pairs * NR).enumerate().for_each(pack);
        }
        // SAFETY: every panel was written in full just above.
        unsafe { panels.set_len(count * pairs * NR) };
        PackedB { k, n, panels }
    }

    /// Rows (`k`) and columns (`n`) of the operand.
    #[cfg(test)]
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.panels.len() * std::mem::size_of::<u32>()
    }
}

/// `c = alpha · a @ b` for a `b` packed by [`PackedB::new`], as [`gemm`].
///
/// # Safety
/// As [`gemm`], with `a.cols == b`'s `k`.
pub(crate) unsafe fn gemm_packed(a: MatRef<'_>, b: &PackedB, alpha: f32, c: *mut f32, ldc: usize, parallel: bool) {
    assert_eq!(a.cols, b.k, "matmul of {}x{} by a packed {}x{}", a.rows, a.cols, b.k, b.n);
    // SAFETY: the caller's promise, passed on.
    unsafe { gemm_of(Left::Plain(a), Right::Packed(b), alpha, c, ldc, parallel) }
}

/// `c = alpha · softmax-numerators @ v` for attention's score rows: each row (`len` wide) of
/// `scores` (`rows × len`, contiguous) becomes `exp(row − max(row))`, written straight as
/// the bf16 pairs the kernel reads (no f32 pass and no packing pass between), its sum (of the
/// f32 exponentials) into `sums`, and the rows multiply `v` (`len × n`, packed) on this thread.
///
/// # Safety
/// The CPU must have AVX-512 BF16; `v`'s `k` is `len > 0`; `scores` holds `rows × len`
/// values and `sums` `rows`; `c` has room for `rows` rows of `n` at stride `ldc ≥ n`, which
/// nothing else reads or writes meanwhile; all of them are written.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn exp_rows_times(scores: &[f32], rows: usize, len: usize, sums: &mut [f32], v: &PackedB, alpha: f32, c: *mut f32, ldc: usize) {
    assert!(v.k == len && len > 0 && scores.len() >= rows * len && sums.len() >= rows, "exp_rows_times: operands do not match");
    let pairs = len.div_ceil(2);
    let padded = rows.div_ceil(MR) * MR;
    PACKED_ROWS.with(|cell| {
        let mut words = cell.borrow_mut();
        if words.len() < padded * pairs {
            words.resize(padded * pairs, 0);
        }
        // The kernel reads whole panels: the rows past the last are zeros.
        words[rows * pairs..padded * pairs].fill(0);
        // SAFETY: AVX-512 BF16 is there (the caller's promise); `words` holds `padded` rows of
        // `pairs`, of which `exp_rows_bf16` writes the first `rows` in full.
        unsafe {
            super::avx512::exp_rows_bf16(&scores[..rows * len], len, sums, &mut words[..rows * pairs]);
            gemm_of(Left::Rows { words: &words[..padded * pairs], rows, k: len }, Right::Packed(v), alpha, c, ldc, false);
        }
    });
}

/// The left operand of a product: as it lies, or rows already converted to bf16 pairs
/// (`rows.div_ceil(MR) · MR` rows of `k.div_ceil(2)` words, zeros past `rows`).
#[derive(Clone, Copy)]
enum Left<'a> {
    Plain(MatRef<'a>),
    Rows { words: &'a [u32], rows: usize, k: usize },
}

/// The right operand of a product: as it lies (each task packs its panel) or packed already.
#[derive(Clone, Copy)]
enum Right<'a> {
    Plain(MatRef<'a>),
    Packed(&'a PackedB),
}

/// [`gemm`], [`gemm_packed`] and [`exp_rows_times`].
///
/// # Safety
/// As [`gemm`].
unsafe fn gemm_of(a: Left<'_>, b: Right<'_>, alpha: f32, c: *mut f32, ldc: usize, parallel: bool) {
    let (m, k) = match a {
        Left::Plain(a) => (a.rows, a.cols),
        Left::Rows { rows, k, .. } => (rows, k),
    };
    let n = match b {
        Right::Plain(b) => b.cols,
        Right::Packed(b) => b.n,
    };
    debug_assert!(available() && k > 0);
    if m == 0 || n == 0 {
        return;
    }
    let pairs = k.div_ceil(2);
    let a_panels = m.div_ceil(MR);
    let packed_a_here;
    let (packed_a, a_rows): (&[u32], bool) = match a {
        Left::Plain(a) => {
            // SAFETY: AVX-512 BF16 is there, `a` inside its buffer (the caller's promise).
            let (words, a_rows) = unsafe { pack_a(a, parallel) };
            packed_a_here = words;
            (&packed_a_here, a_rows)
        }
        Left::Rows { words, .. } => {
            assert!(words.len() >= a_panels * MR * pairs, "row-packed operand shorter than its rows");
            (words, true)
        }
    };
    let c_ptr = SharedOut(c);
    let b_panels = n.div_ceil(NR);
    // Tasks: a column panel of `b` by a run of `a`'s panels. Few column panels (a narrow
    // `b`) are split by rows too, so that every thread has work.
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let runs = (4 * threads).div_ceil(b_panels).clamp(1, a_panels.div_ceil(4));
    let run_len = a_panels.div_ceil(runs);
    let task = |t: usize| {
        let (q, run) = (t / runs, t % runs);
        let c_ptr = &c_ptr;
        let cols = NR.min(n - q * NR);
        let multiply = |panel: *const u32| {
            for p in run * run_len..((run + 1) * run_len).min(a_panels) {
                let rows = MR.min(m - p * MR);
                // SAFETY: both panels hold `pairs` pairs; this task alone writes columns
                // `q·NR..q·NR + cols` of rows `p·MR..p·MR + rows` of `c`, inside its capacity.
                unsafe {
                    let (a, c) = (packed_a.as_ptr().add(p * pairs * MR), c_ptr.0.add(p * MR * ldc + q * NR));
                    if a_rows {
                        kernel::<true>(pairs, a, panel, alpha, c, ldc, rows, cols);
                    } else {
                        kernel::<false>(pairs, a, panel, alpha, c, ldc, rows, cols);
                    }
                }
            }
        };
        match b {
            Right::Packed(b) => multiply(b.panels[q * pairs * NR..(q + 1) * pairs * NR].as_ptr()),
            Right::Plain(b) => PACKED_B.with(|cell| {
                let mut buffer = cell.borrow_mut();
                buffer.clear();
                buffer.reserve(pairs * NR);
                // SAFETY: AVX-512 BF16 is there; the spare capacity holds `pairs × NR`.
                unsafe {
                    pack_panel(Lines::columns_of(b), q * NR, NR, pairs, &mut buffer.spare_capacity_mut()[..pairs * NR]);
                    buffer.set_len(pairs * NR);
                }
                multiply(buffer.as_ptr());
            }),
        }
    };
    if parallel {
        (0..b_panels * runs).into_par_iter().for_each(task);
    } else {
        (0..b_panels * runs).for_each(task);
    }
}

/// `a` packed into its [`MR`]-row panels, and whether as rows: `[MR][k pair]` when its rows
/// run along `k` (what [`kernel`]`::<true>` reads), else `[k pair][MR]`.
///
/// # Safety
/// AVX-512 BF16 must be there; `a` inside its buffer.
unsafe fn pack_a(a: MatRef<'_>, parallel: bool) -> (Vec<u32>, bool) {
    let (m, k) = (a.rows, a.cols);
    let pairs = k.div_ceil(2);
    let a_lines = Lines::rows_of(a);
    let a_panels = m.div_ceil(MR);
    let mut packed_a: Vec<u32> = Vec::with_capacity(a_panels * pairs * MR);
    let spare = packed_a.spare_capacity_mut();
    // An `a` whose rows are contiguous in `k` (activations, attention's softmax rows) keeps
    // its rows as rows, each converted in place of a transpose: the kernel broadcasts from
    // `MR` rows side by side. Any other `a` is packed `[k pair][MR]`.
    let a_rows = a_lines.k_stride == 1 && a_lines.line_stride != 1;
    let pack_a_panel = |(p, panel): (usize, &mut [std::mem::MaybeUninit<u32>])| {
        // SAFETY: AVX-512 BF16 is there (the caller's promise); `panel` is this panel's `pairs × MR`.
        unsafe {
            if a_rows {
                pack_rows(a_lines, p * MR, MR, pairs, panel)
            } else {
                pack_panel(a_lines, p * MR, MR, pairs, panel)
            }
        }
    };
    if parallel {
        spare.par_chunks_mut(pairs * MR).enumerate().for_each(pack_a_panel);
    } else {
        spare.chunks_mut(pairs * MR).enumerate().for_each(pack_a_panel);
    }
    // SAFETY: every panel was written in full just above.
    unsafe { packed_a.set_len(a_panels * pairs * MR) };
    (packed_a, a_rows)
}

thread_local! {
    /// A thread's packed panel of `b`, kept from call to call.
    static PACKED_B: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A thread's bf16 rows of [`exp_rows_times`], kept from call to call.
    static PACKED_ROWS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An output written by parallel tasks at disjoint offsets.
struct SharedOut(*mut f32);
// SAFETY: the tasks that share it write disjoint blocks of `c` (see `gemm`).
unsafe impl Sync for SharedOut {}

/// An operand seen as `lines` lines (rows of `a`, columns of `b`) of `k` values each: value
/// `kk` of line `l` is at `line_stride·l + k_stride·kk` from the matrix's start.
#[derive(Clone, Copy)]
struct Lines<'a> {
    m: MatRef<'a>,
    lines: usize,
    k: usize,
    line_stride: usize,
    k_stride: usize,
}

impl<'a> Lines<'a> {
    /// `a`'s rows, the lines of a left operand's panels.
    fn rows_of(a: MatRef<'a>) -> Lines<'a> {
        Lines { m: a, lines: a.rows, k: a.cols, line_stride: a.row_stride, k_stride: a.col_stride }
    }

    /// `b`'s columns, the lines of a right operand's panels.
    fn columns_of(b: MatRef<'a>) -> Lines<'a> {
        Lines { m: b, lines: b.cols, k: b.rows, line_stride: b.col_stride, k_stride: b.row_stride }
    }

    fn base(&self) -> *const f32 {
        self.m.data[self.m.offset..].as_ptr()
    }
}

/// Converts lines `first..first + width` of `src`, contiguous in `k`, into `out` as
/// `[width][pairs]` u32s (zeros past its last line, and for the missing half of the last
/// pair when `k` is odd): each line's pairs in order, no transpose.
///
/// # Safety
/// AVX-512 BF16 must be there; `out` must hold `width × pairs` values; `src.k_stride == 1`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_rows(src: Lines<'_>, first: usize, width: usize, pairs: usize, out: &mut [std::mem::MaybeUninit<u32>]) {
    assert!(out.len() >= pairs * width && src.k_stride == 1);
    let (k, here) = (src.k, src.lines.saturating_sub(first).min(width));
    let out = out.as_mut_ptr().cast::<u32>();
    // SAFETY: line `first + l` for `l < here` holds `k` values inside the matrix (checked by
    // `gemm`); the writes stay inside `out`'s `width × pairs`.
    unsafe {
        for l in 0..width {
            let row = out.add(l * pairs);
            if l >= here {
                std::slice::from_raw_parts_mut(row, pairs).fill(0);
                continue;
            }
            let line = src.base().add((first + l) * src.line_stride);
            let mut pair = 0;
            while 2 * pair + 32 <= k {
                let v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(line.add(2 * pair + 16)), _mm512_loadu_ps(line.add(2 * pair)));
                _mm512_storeu_si512(row.add(pair).cast(), std::mem::transmute::<__m512bh, __m512i>(v));
                pair += 16;
            }
            while pair < pairs {
                let lo = to_bf16(*line.add(2 * pair));
                let hi = if 2 * pair + 1 < k { to_bf16(*line.add(2 * pair + 1)) } else { 0 };
                *row.add(pair) = lo | (hi << 16);
                pair += 1;
            }
        }
    }
}

/// Packs lines `first..first + width` of `src` (zeros past its last line, and for the
/// missing half of the last pair when `k` is odd) into `out`: `[pair][width]` u32s, each
/// bf16 of value `2·pair` in the low half and of `2·pair + 1` in the high half.
///
/// # Safety
/// AVX-512 BF16 must be there; `out` must hold `pairs × width` values, `width ≤ 32`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_panel(src: Lines<'_>, first: usize, width: usize, pairs: usize, out: &mut [std::mem::MaybeUninit<u32>]) {
    assert!(out.len() >= pairs * width && width <= 32);
    let k = src.k;
    let here = src.lines.saturating_sub(first).min(width);
    let base = src.base();
    let out = out.as_mut_ptr().cast::<u32>();
    // SAFETY (all reads below): line `first + l` for `l < here` and value `kk < k` lie inside
    // the matrix (checked by `matmul`); masked-off lanes are not read.
    unsafe {
        if src.line_stride == 1 {
            // Lines contiguous: 16 lines of value `kk` in one load.
            for pair in 0..pairs {
                for l0 in (0..width).step_by(16) {
                    let count = here.saturating_sub(l0).min(16);
                    let load = mask(count);
                    let at = |kk: usize| {
                        if kk < k && count > 0 {
                            _mm512_maskz_loadu_ps(load, base.add(kk * src.k_stride + first + l0))
                        } else {
                            _mm512_setzero_ps()
                        }
                    };
                    let (lo, hi) = (at(2 * pair), at(2 * pair + 1));
                    let lo = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(lo)));
                    let hi = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(hi)));
                    let v = _mm512_or_si512(lo, _mm512_slli_epi32::<16>(hi));
                    _mm512_mask_storeu_epi32(out.add(pair * width + l0).cast(), mask((width - l0).min(16)), v);
                }
            }
        } else {
            // Lines contiguous in `k`: 16 lines by 16 pairs converted at once and transposed in
            // registers, the pairs past the last whole block one value at a time.
            let whole = if src.k_stride == 1 { k / 32 * 16 } else { 0 };
            for l0 in (0..width).step_by(16) {
                let count = here.saturating_sub(l0).min(16);
                let keep = mask((width - l0).min(16));
                for pair0 in (0..whole).step_by(16) {
                    let mut block = [_mm512_setzero_si512(); 16];
                    for (i, row) in block.iter_mut().enumerate().take(count) {
                        let line = base.add((first + l0 + i) * src.line_stride + 2 * pair0);
                        *row = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(line.add(16)), _mm512_loadu_ps(line)));
                    }
                    for (j, column) in transpose16(block).into_iter().enumerate() {
                        _mm512_mask_storeu_epi32(out.add((pair0 + j) * width + l0).cast(), keep, column);
                    }
                }
            }
            for l in 0..width {
                let column = out.add(l);
                if l >= here {
                    (whole..pairs).for_each(|pair| *column.add(pair * width) = 0);
                    continue;
                }
                let line = base.add((first + l) * src.line_stride);
                for pair in whole..pairs {
                    let lo = to_bf16(*line.add(2 * pair * src.k_stride));
                    let hi = if 2 * pair + 1 < k { to_bf16(*line.add((2 * pair + 1) * src.k_stride)) } else { 0 };
                    *column.add(pair * width) = lo | (hi << 16);
                }
            }
        }
    }
}

/// The 16 x 16 transpose of 32-bit words: word `j` of row `i` becomes word `i` of row `j`.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // Within 128-bit lanes: pairs of rows interleaved, then quadruples, so that lane `q` of
    // `u[4g + c]` holds word `4q + c` of rows `4g..4g + 4`.
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 { _mm512_unpacklo_epi32(a, b) } else { _mm512_unpackhi_epi32(a, b) }
    });
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + c / 2], t[4 * g + c / 2 + 2]);
        if c % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
    });
    // Then across lanes: word `w = 4q + c` of all 16 rows from lane `q` of `u[c]`, `u[4 + c]`,
    // `u[8 + c]`, `u[12 + c]`.
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let (v_even, v_odd) = (_mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]), _mm512_shuffle_i32x4::<0xdd>(u[c], u[4 + c]));
        let (w_even, w_odd) = (_mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]), _mm512_shuffle_i32x4::<0xdd>(u[8 + c], u[12 + c]));
        out[c] = _mm512_shuffle_i32x4::<0x88>(v_even, w_even);
        out[8 + c] = _mm512_shuffle_i32x4::<0xdd>(v_even, w_even);
        out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v_odd, w_odd);
        out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v_odd, w_odd);
    }
    out
}

/// `x` rounded to bf16 (nearest, ties to even; NaN stays NaN), as `vcvtneps2bf16` does.
fn to_bf16(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) | 0x40;
    }
    // Denormals to zero, as the instruction does.
    if bits & 0x7f80_0000 == 0 {
        return (bits >> 16) & 0x8000;
    }
    (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
}

/// `c[rows, cols] = alpha · a_panel · b_panel` over `pairs` k pairs, `c` row-major with row
/// stride `ldc`; `a_panel` is `[MR][pairs]` with `A_ROWS` ([`pack_rows`]), else `[pairs][MR]`.
///
/// # Safety
/// AVX-512 BF16 must be there; `a` holds `pairs × MR` and `b` `pairs × NR` values; `c` has
/// room for `rows ≤ MR` rows of `cols ≤ NR` values at stride `ldc`.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const A_ROWS: bool>(pairs: usize, a: *const u32, b: *const u32, alpha: f32, c: *mut f32, ldc: usize, rows: usize, cols: usize) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: reads stay inside the panels, writes inside `c`'s block (the caller's promise).
    unsafe {
        for pair in 0..pairs {
            let b0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(pair * NR).cast()));
            let b1 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(pair * NR + 16).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let word = if A_ROWS { *a.add(r * pairs + pair) } else { *a.add(pair * MR + r) };
                let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(word as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            }
        }
        let (left, right) = (mask(cols), mask(cols.saturating_sub(16)));
        let alpha = _mm512_set1_ps(alpha);
        // A loop of fixed length, unrolled: the accumulators stay in registers.
        for (r, acc) in acc.iter().enumerate() {
            if r < rows {
                _mm512_mask_storeu_ps(c.add(r * ldc), left, _mm512_mul_ps(alpha, acc[0]));
                _mm512_mask_storeu_ps(c.add(r * ldc + 16), right, _mm512_mul_ps(alpha, acc[1]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MatRef, PackedB, available, exp_rows_times, gemm, gemm_packed, to_bf16};

    fn matmul(a: MatRef<'_>, b: MatRef<'_>, parallel: bool) -> Vec<f32> {
        let mut c = vec![f32::NAN; a.rows * b.cols];
        assert!(a.cols == b.rows && a.cols > 0 && a.in_bounds() && b.in_bounds());
        // SAFETY: the callers check `available()`; the operands are checked just above; `c`
        // holds `a.rows` rows of `b.cols`.
        unsafe { gemm(a, b, 1.0, c.as_mut_ptr(), b.cols, parallel) };
        c
    }

    fn wave(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.0 - 1.0 + (i % 7) as f32 * 1e-3).collect()
    }

    fn rounded(x: f32) -> f64 {
        f64::from(f32::from_bits(to_bf16(x) << 16))
    }

    #[test]
    fn transpose16_transposes() {
        if !available() {
            return;
        }
        use std::arch::x86_64::*;
        let rows: [__m512i; 16] = std::array::from_fn(|i| {
            let words: [i32; 16] = std::array::from_fn(|j| (100 * i + j) as i32);
            // SAFETY: AVX-512F is there (`available`); `words` holds 16 values.
            unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
        });
        // SAFETY: as above.
        let columns = unsafe { super::transpose16(rows) };
        for (j, c) in columns.into_iter().enumerate() {
            let mut words = [0i32; 16];
            // SAFETY: as above.
            unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), c) };
            assert_eq!(words, std::array::from_fn(|i| (100 * i + j) as i32), "column {j}");
        }
    }

    #[test]
    fn rounds_to_nearest_even_as_the_instruction() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between two bf16: ties to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert!(f32::from_bits(to_bf16(f32::NAN) << 16).is_nan());
        assert_eq!(to_bf16(f32::MAX), 0x7f80, "rounds up to infinity, as bf16 has no f32::MAX");
    }

    /// Attention's fused softmax rows times `v`: the f64 product of the bf16-rounded
    /// exponentials and `v`, within a bf16 step of each exponential; the sums within f32
    /// summation error of the exact ones.
    #[test]
    fn exp_rows_times_multiplies_the_rounded_exponentials() {
        if !available() {
            return;
        }
        // Odd and even widths, rows short of a panel and over several.
        for (rows, len, n) in [(1, 1, 3), (5, 33, 17), (13, 64, 64), (30, 101, 40)] {
            let scores: Vec<f32> = wave(rows * len, 4).iter().map(|x| 6.0 * x).collect();
            let v_data = wave(len * n, 5);
            let v = PackedB::new(MatRef::rows(&v_data, len, n), false);
            let mut sums = vec![f32::NAN; rows];
            let mut c = vec![f32::NAN; rows * (n + 2)];
            // SAFETY: `available()` above; `c` holds `rows` rows of `n` at stride `n + 2`.
            unsafe { exp_rows_times(&scores, rows, len, &mut sums, &v, 0.5, c.as_mut_ptr(), n + 2) };
            for r in 0..rows {
                let row = &scores[r * len..(r + 1) * len];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let exps: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                assert!((f64::from(sums[r]) - sum).abs() <= 1e-5 * sum, "{rows}x{len}: sum {} vs {sum}", sums[r]);
                for j in 0..n {
                    let want: f64 = 0.5 * exps.iter().enumerate().map(|(i, &e)| rounded(e as f32) * rounded(v_data[i * n + j])).sum::<f64>();
                    // One bf16 step (2⁻⁸ relative) of each term at most, and mostly none.
                    let bound: f64 = 0.5 * exps.iter().enumerate().map(|(i, &e)| (e * rounded(v_data[i * n + j])).abs()).sum::<f64>() / 256.0;
                    let got = f64::from(c[r * (n + 2) + j]);
                    assert!((got - want).abs() <= bound + 1e-6, "{rows}x{len}x{n} at ({r}, {j}): {got} vs {want}");
                }
            }
        }
    }

    /// Every layout the linear layers pass (row-major, transposed, strided), edge sizes
    /// (odd k, partial panels), on one thread and on several: equal to the f64 product of
    /// the bf16-rounded operands within f32 summation error.
    #[test]
    fn matches_the_product_of_the_rounded_operands() {
        if !available() {
            return;
        }
        for (m, k, n) in [(1, 1, 1), (13, 7, 33), (37, 64, 45), (100, 129, 70), (12, 32, 32)] {
            let a_data = wave(m * k + 5, 1);
            let b_data = wave(k * n + 3, 2);
            let a_row = MatRef { offset: 5, ..MatRef::rows(&a_data, m, k) };
            let a_col = MatRef { data: &a_data, offset: 5, rows: m, cols: k, row_stride: 1, col_stride: m };
            let b_row = MatRef { offset: 3, ..MatRef::rows(&b_data, k, n) };
            let b_col = MatRef { data: &b_data, offset: 3, rows: k, cols: n, row_stride: 1, col_stride: k };
            // Every other value of a wider buffer: neither stride 1.
            let wide = wave(2 * m * k, 3);
            let a_strided = MatRef { data: &wide, offset: 0, rows: m, cols: k, row_stride: 2 * k, col_stride: 2 };
            for (a, b) in [(a_row, b_row), (a_row, b_col), (a_col, b_row), (a_col, b_col), (a_strided, b_row)] {
                let at = |i: usize, j: usize| a.data[a.offset + i * a.row_stride + j * a.col_stride];
                let bt = |i: usize, j: usize| b.data[b.offset + i * b.row_stride + j * b.col_stride];
                for parallel in [false, true] {
                    let got = matmul(a, b, parallel);
                    // Packed once beforehand: the very same products.
                    let packed = PackedB::new(b, parallel);
                    let mut again = vec![f32::NAN; m * n];
                    // SAFETY: as in `matmul`.
                    unsafe { gemm_packed(a, &packed, 1.0, again.as_mut_ptr(), n, parallel) };
                    assert_eq!(again, got, "{m}x{k}x{n}, packed beforehand");
                    for i in 0..m {
                        for j in 0..n {
                            let want: f64 = (0..k).map(|kk| rounded(at(i, kk)) * rounded(bt(kk, j))).sum();
                            let err = (f64::from(got[i * n + j]) - want).abs();
                            assert!(err <= 1e-5 * (k as f64), "{m}x{k}x{n} at ({i}, {j}): {} vs {want}", got[i * n + j]);
                        }
                    }
                }
            }
        }
    }
}
