//! `x @ W` (a bias-free linear layer) for the Flex backend, straight into gemm, and the
//! process's matmul precision: f32 on gemm, or bf16 on [`super::bf16_gemm`].
//!
//! Why it exists: burn-flex 0.21's matmul allocates each output as zeroed bytes and then
//! copies it into an aligned buffer: two passes over every output on the calling thread,
//! with the other core idle, on the largest tensors of an ACT step. Here gemm writes the
//! output once, into a buffer nothing else touches first.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
use burn_flex::FlexTensor;

use super::{cast_backend, from_plain, plain, values};
use crate::model::ModelError;

/// Below this many multiply-adds a product runs on the calling thread (burn-flex's threshold).
const PARALLEL_OPS: usize = 192 * 192 * 192;

/// How [`matmul`] and [`matmul_into`] (the CPU's linear layers and attention, forward and
/// backward) multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// f32 throughout: the reference's f32 numbers.
    #[default]
    F32,
    /// Operands rounded to bf16, products summed in f32, as bf16 autocast does: about twice
    /// the multiply-adds a cycle on CPUs with AVX-512 BF16.
    Bf16,
}

impl std::str::FromStr for MatmulPrecision {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "f32" => Ok(MatmulPrecision::F32),
            "bf16" => Ok(MatmulPrecision::Bf16),
            other => Err(ModelError::Config(format!("matmul precision {other:?}: expected f32 or bf16"))),
        }
    }
}

impl std::fmt::Display for MatmulPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::Bf16 => "bf16",
        })
    }
}

/// The process's [`MatmulPrecision`] is bf16 (set once at start by the command that runs).
static BF16_MATMULS: AtomicBool = AtomicBool::new(false);

/// Sets how every later CPU matmul multiplies, for the whole process (as torch's
/// `set_float32_matmul_precision`). bf16 needs AVX-512 BF16: an error names what is missing.
pub fn set_matmul_precision(precision: MatmulPrecision) -> Result<(), ModelError> {
    if precision == MatmulPrecision::Bf16 && !bf16_available() {
        return Err(ModelError::Config("matmul precision bf16 needs a CPU with AVX-512 BF16 (AMD Zen 4 or later, Intel Sapphire Rapids or later); this one has none".into()));
    }
    BF16_MATMULS.store(precision == MatmulPrecision::Bf16, Ordering::Relaxed);
    Ok(())
}

/// The process's current [`MatmulPrecision`].
pub fn matmul_precision() -> MatmulPrecision {
    if BF16_MATMULS.load(Ordering::Relaxed) { MatmulPrecision::Bf16 } else { MatmulPrecision::F32 }
}

/// Whether this CPU can multiply in bf16 ([`MatmulPrecision::Bf16`]).
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::bf16_gemm::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A matrix read in place: `data[offset + i·row_stride + j·col_stride]` for `i < rows`, `j < cols`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The buffer holding it.
    pub data: &'a [f32],
    /// Where element `(0, 0)` is.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Step between rows.
    pub row_stride: usize,
    /// Step between columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef { data, offset: 0, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// A 2-D Flex tensor as it lies in memory (any non-negative strides).
    pub fn of(t: &'a FlexTensor) -> MatRef<'a> {
        let layout = t.layout();
        let [rows, cols] = layout.shape().dims::<2>();
        let strides = layout.strides();
        let stride = |s: isize| usize::try_from(s).expect("a matrix with non-negative strides");
        MatRef { data: t.storage::<f32>(), offset: layout.start_offset(), rows, cols, row_stride: stride(strides[0]), col_stride: stride(strides[1]) }
    }

    /// The transpose (no copy).
    pub fn t(self) -> MatRef<'a> {
        MatRef { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Whether every element lies inside `data`.
    pub(crate) fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// `a @ b` as a new row-major `[a.rows, b.cols]` buffer, at the process's [`MatmulPrecision`].
pub fn matmul(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
    matmul_prepared(a, &Prepared::as_is(b))
}

/// `a @ w`, or `a @ wᵀ` with `transpose`, for a model's weight `w` (2-D f32 Flex), at the
/// process's [`MatmulPrecision`]: under bf16 `w` is packed once and kept
/// ([`super::packed_weights`]), not packed again by every product.
pub(crate) fn matmul_by_weight(a: MatRef<'_>, w: &FlexTensor, transpose: bool) -> Vec<f32> {
    matmul_prepared(a, &Prepared::weight(w, transpose))
}

/// `a @ b` as a new row-major `[a.rows, b.cols]` buffer.
fn matmul_prepared(a: MatRef<'_>, b: &Prepared<'_>) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.m.cols);
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: `out` has room for `m` rows of `n` at stride `n`, all of which are written.
    unsafe {
        matmul_prepared_into(a, b, 1.0, out.as_mut_ptr(), n, m * n * k >= PARALLEL_OPS);
        out.set_len(m * n);
    }
    out
}

/// `c = alpha · a @ b` at the process's [`MatmulPrecision`], into rows of stride `ldc`.
/// `parallel`: spread over rayon's threads.
///
/// # Safety
/// `c` must have room for `a.rows` rows of `b.cols` values at stride `ldc ≥ b.cols`, which
/// nothing else reads or writes meanwhile; all of them are written.
///
/// # Panics
/// If the inner sizes differ or an operand reaches past its buffer.
pub(crate) unsafe fn matmul_into(a: MatRef<'_>, b: MatRef<'_>, alpha: f32, c: *mut f32, ldc: usize, parallel: bool) {
    assert_eq!(a.cols, b.rows, "matmul of {}x{} by {}x{}", a.rows, a.cols, b.rows, b.cols);
    assert!(a.in_bounds() && b.in_bounds(), "a matrix reaches past its buffer");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: the caller's promise: `m` rows of `n` at stride `ldc`.
        (0..m).for_each(|i| unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n).fill(0.0) });
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if matmul_precision() == MatmulPrecision::Bf16 {
        // SAFETY: the operands were checked above, `k > 0`, bf16 is only ever set where the
        // CPU has AVX-512 BF16 (`set_matmul_precision`); the caller's promise about `c`.
        return unsafe { super::bf16_gemm::gemm(a, b, alpha, c, ldc, parallel) };
    }
    let parallelism = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: both operands stay inside their buffers (checked above); gemm writes every one of
    // the outputs (`read_dst` false, `k > 0`), inside the room the caller promised.
    unsafe {
        gemm::gemm(
            m, n, k,
            c, 1, ldc as isize, false,
            a.data.as_ptr().add(a.offset), a.col_stride as isize, a.row_stride as isize,
            b.data.as_ptr().add(b.offset), b.col_stride as isize, b.row_stride as isize,
            0.0, alpha, false, false, false, parallelism,
        );
    }
}

/// A right operand of several products ([`matmul_prepared_into`]), made ready once for the
/// process's [`MatmulPrecision`]: under bf16 packed (attention's k and v serve every block
/// of query rows, a weight every product of a step), under f32 read in place (gemm packs as
/// it goes).
pub(crate) struct Prepared<'a> {
    m: MatRef<'a>,
    #[cfg(target_arch = "x86_64")]
    packed: Option<std::sync::Arc<super::bf16_gemm::PackedB>>,
}

impl<'a> Prepared<'a> {
    /// `b` ready for [`matmul_prepared_into`]; `parallel`: pack on rayon's threads.
    ///
    /// # Panics
    /// If `b` reaches past its buffer.
    pub(crate) fn new(b: MatRef<'a>, parallel: bool) -> Prepared<'a> {
        assert!(b.in_bounds(), "a matrix reaches past its buffer");
        #[cfg(not(target_arch = "x86_64"))]
        let _ = parallel;
        Prepared {
            m: b,
            #[cfg(target_arch = "x86_64")]
            packed: Self::packs(b).then(|| std::sync::Arc::new(super::bf16_gemm::PackedB::new(b, parallel))),
        }
    }

    /// `w` (a model's 2-D weight), or `wᵀ` with `transpose`: under bf16 packed once and kept
    /// ([`super::packed_weights`]).
    ///
    /// # Panics
    /// If `w` reaches past its buffer.
    pub(crate) fn weight(w: &'a FlexTensor, transpose: bool) -> Prepared<'a> {
        let b = if transpose { MatRef::of(w).t() } else { MatRef::of(w) };
        assert!(b.in_bounds(), "a matrix reaches past its buffer");
        Prepared {
            m: b,
            #[cfg(target_arch = "x86_64")]
            packed: Self::packs(b).then(|| super::packed_weights::packed(w, b)),
        }
    }

    /// `b` read as it lies, each product packing what it needs.
    fn as_is(b: MatRef<'a>) -> Prepared<'a> {
        Prepared {
            m: b,
            #[cfg(target_arch = "x86_64")]
            packed: None,
        }
    }

    /// Whether `b` is packed beforehand: under bf16, where it has rows to pack.
    #[cfg(target_arch = "x86_64")]
    fn packs(b: MatRef<'_>) -> bool {
        matmul_precision() == MatmulPrecision::Bf16 && b.rows > 0
    }

    /// The operand packed for the bf16 kernel, under bf16.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn packed(&self) -> Option<&super::bf16_gemm::PackedB> {
        self.packed.as_deref()
    }
}

/// [`matmul_into`] with a right operand made ready by [`Prepared::new`].
///
/// # Safety
/// As [`matmul_into`].
pub(crate) unsafe fn matmul_prepared_into(a: MatRef<'_>, b: &Prepared<'_>, alpha: f32, c: *mut f32, ldc: usize, parallel: bool) {
    #[cfg(target_arch = "x86_64")]
    if let Some(packed) = &b.packed {
        assert_eq!(a.cols, b.m.rows, "matmul of {}x{} by {}x{}", a.rows, a.cols, b.m.rows, b.m.cols);
        assert!(a.in_bounds(), "a matrix reaches past its buffer");
        // SAFETY: packed only under bf16, where the CPU has AVX-512 BF16, with `k > 0`; `a` is
        // checked just above; the caller's promise about `c`.
        return unsafe { super::bf16_gemm::gemm_packed(a, packed, alpha, c, ldc, parallel) };
    }
    // SAFETY: the caller's promise, passed on.
    unsafe { matmul_into(a, b.m, alpha, c, ldc, parallel) }
}

/// `x @ weight` over the last axis of `x` (`weight: [in, out]`, read in place).
/// It computes on the values: call it on plain Flex only ([`super::is_flex`]).
pub fn linear_tensor<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>) -> Tensor<B, D> {
    let mut dims = x.dims();
    let [k, n] = weight.dims();
    let x = plain(x);
    let weight = cast_backend::<B, burn::backend::Flex, 2>(weight).expect("plain Flex").into_primitive().tensor();
    let rows = dims[..D - 1].iter().product();
    let out = matmul_by_weight(MatRef::rows(values(&x), rows, k), &weight, false);
    dims[D - 1] = n;
    from_plain(out, dims)
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;

    use super::{MatRef, matmul};
    use crate::model::Cpu;

    #[test]
    fn matches_burn_matmul_with_strided_and_transposed_operands() {
        let device = Default::default();
        // Large enough to run on rayon threads, and small; a transposed right side.
        for (m, k, n) in [(3, 5, 4), (300, 200, 190)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
            let got = matmul(MatRef::rows(&a, m, k), MatRef::rows(&bt, n, k).t());
            let ta = Tensor::<Cpu, 2>::from_data(TensorData::new(a, [m, k]), &device);
            let tb = Tensor::<Cpu, 2>::from_data(TensorData::new(bt, [n, k]), &device).transpose();
            let want: Vec<f32> = ta.matmul(tb).into_data().into_vec().unwrap();
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{m}x{k}x{n}: max |Δ| {worst}");
        }
        assert_eq!(matmul(MatRef::rows(&[], 2, 0), MatRef::rows(&[], 0, 3)), vec![0.0; 6]);
    }
}
