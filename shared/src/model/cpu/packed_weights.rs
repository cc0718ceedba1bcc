//! The model's weights packed for the bf16 kernel once, not once per product.
//!
//! Why: under [`super::linear::MatmulPrecision::Bf16`] every product first converts its
//! right operand into bf16 panels, and an ACT step multiplies by each weight many times
//! (every layer application of every latent recursion, and again in the backward pass).
//!
//! An entry is keyed by where the weight's values lie and holds a reference to its buffer,
//! so that while the entry lives that buffer can neither be freed (its address then reused by
//! other values) nor changed in place (Flex copies a shared buffer before writing to it). An
//! entry whose buffer nothing else holds any more (a model dropped, weights replaced by an
//! optimizer step) is dropped at the next insertion.

use std::sync::{Arc, Mutex, MutexGuard};

use burn_flex::FlexTensor;

use super::bf16_gemm::PackedB;
use super::linear::MatRef;

/// Most bytes of packed weights kept (the oldest go first beyond it): the 7M model's are 14 MB.
const MAX_BYTES: usize = 1 << 30;

/// How a weight's values are read: from where in its buffer, in what shape and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// One weight buffer and its packed views (a weight and its transpose are two).
struct Entry {
    /// Where the buffer starts.
    buffer: usize,
    /// The weight itself: keeps its buffer alive and unchanged.
    pinned: FlexTensor,
    views: Vec<(View, Arc<PackedB>)>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.views.iter().map(|(_, p)| p.bytes()).sum()
    }
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn cache() -> MutexGuard<'static, Vec<Entry>> {
    // A panic elsewhere while it was held leaves the entries as they were: still valid.
    CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The view of `buffer` held in `cache`, if any.
fn find(cache: &[Entry], buffer: usize, view: View) -> Option<Arc<PackedB>> {
    let entry = cache.iter().find(|e| e.buffer == buffer)?;
    entry.views.iter().find(|(v, _)| *v == view).map(|(_, p)| p.clone())
}

/// `m`, a view of the f32 weight `w`'s values (`w` itself or its transpose), packed for
/// [`super::bf16_gemm::gemm_packed`]: packed on first use, from the cache after.
///
/// # Panics
/// If the CPU lacks AVX-512 BF16, `m` has no rows or reads past `w`'s buffer.
pub(crate) fn packed(w: &FlexTensor, m: MatRef<'_>) -> Arc<PackedB> {
    assert!(std::ptr::eq(m.data, w.storage::<f32>()), "a packed weight's view reads another buffer");
    let buffer = w.bytes().as_ptr() as usize;
    let view = View { offset: m.offset, rows: m.rows, cols: m.cols, row_stride: m.row_stride, col_stride: m.col_stride };
    if let Some(packed) = find(&cache(), buffer, view) {
        return packed;
    }
    let packed = Arc::new(PackedB::new(m, m.rows * m.cols >= 64 * 1024));
    let mut cache = cache();
    // Another thread may have packed it meanwhile: keep one.
    if let Some(packed) = find(&cache, buffer, view) {
        return packed;
    }
    cache.retain(|e| !e.pinned.is_unique());
    match cache.iter_mut().find(|e| e.buffer == buffer) {
        Some(entry) => entry.views.push((view, packed.clone())),
        None => cache.push(Entry { buffer, pinned: w.clone(), views: vec![(view, packed.clone())] }),
    }
    let mut total: usize = cache.iter().map(Entry::bytes).sum();
    while total > MAX_BYTES && cache.len() > 1 {
        total -= cache.remove(0).bytes();
    }
    packed
}

/// Weight buffers held now (tests).
#[cfg(test)]
fn entries() -> usize {
    cache().len()
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn_flex::FlexTensor;

    use super::{entries, packed};
    use crate::model::cpu::bf16_gemm::{available, gemm, gemm_packed};
    use crate::model::cpu::linear::MatRef;

    fn wave(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.0 - 1.0).collect()
    }

    fn product(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut c = vec![f32::NAN; a.rows * b.cols];
        // SAFETY: callers check `available()`; the operands lie in their buffers, `c` holds the rows.
        unsafe { gemm(a, b, 1.0, c.as_mut_ptr(), b.cols, false) };
        c
    }

    fn packed_product(a: MatRef<'_>, w: &FlexTensor, transpose: bool) -> Vec<f32> {
        let b = packed(w, if transpose { MatRef::of(w).t() } else { MatRef::of(w) });
        let mut c = vec![f32::NAN; a.rows * b.dims().1];
        // SAFETY: as above.
        unsafe { gemm_packed(a, &b, 1.0, c.as_mut_ptr(), b.dims().1, true) };
        c
    }

    /// The cached operand gives the very products of the unpacked one, either way round;
    /// a weight changed (copy on write) or dropped is never served from a stale entry.
    #[test]
    fn cached_weights_multiply_as_unpacked_and_never_go_stale() {
        if !available() {
            return;
        }
        let (m, k, n) = (29, 70, 45);
        let a = wave(m * k, 1);
        let mut w = FlexTensor::from_data(TensorData::new(wave(k * n, 2), [k, n]));
        let at = wave(m * n, 3);
        for _ in 0..2 {
            assert_eq!(packed_product(MatRef::rows(&a, m, k), &w, false), product(MatRef::rows(&a, m, k), MatRef::of(&w)));
            assert_eq!(packed_product(MatRef::rows(&at, m, n), &w, true), product(MatRef::rows(&at, m, n), MatRef::of(&w).t()));
        }
        // Changed in place: Flex copies the shared buffer, so the new values get an entry of their own.
        w.storage_mut::<f32>().iter_mut().for_each(|x| *x = -*x);
        assert_eq!(packed_product(MatRef::rows(&a, m, k), &w, false), product(MatRef::rows(&a, m, k), MatRef::of(&w)));
        // Dropped: its entries go at the next insertion, whatever else the tests hold.
        let before = entries();
        drop(w);
        let other = FlexTensor::from_data(TensorData::new(wave(k * n, 4), [k, n]));
        assert_eq!(packed_product(MatRef::rows(&a, m, k), &other, false), product(MatRef::rows(&a, m, k), MatRef::of(&other)));
        assert!(entries() <= before, "entries {} after dropping a weight, {before} before", entries());
    }
}
