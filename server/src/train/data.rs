//! Training data: the mazes of a run and the reference's order of drawing them.
//!
//! `PuzzleDataset._iter_train` in the reference: each "iteration" covers `eval_interval`
//! epochs; its group order is `eval_interval` seeded permutations of the groups, concatenated;
//! each group contributes one random puzzle (one of its augmented views) and one random
//! example of it; batches of `global_batch_size` are cut in order and the last partial batch
//! is dropped. The reference seeds iteration `i` (1-based) with `seed + i` (Philox); we use
//! ChaCha8 with the same seeds, so the order is ours but reproducible, and a position
//! `(iteration, batch)` is enough to resume it.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trm_shared::dataset::SplitData;

/// Where the sampler stands: batch `batch` of iteration `iteration` (both 0-based) is next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    /// Iteration (block of `eval_interval` epochs).
    pub iteration: u64,
    /// Next batch within it.
    pub batch: u64,
}

/// The example indices of every batch of one iteration.
pub fn iteration_batches(split: &SplitData, seed: u64, iteration: u64, epochs: usize, batch_size: usize) -> Vec<Vec<usize>> {
    let groups = split.total_groups();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(iteration + 1));
    let mut order = Vec::with_capacity(groups * epochs);
    for _ in 0..epochs {
        let mut perm: Vec<usize> = (0..groups).collect();
        perm.shuffle(&mut rng);
        order.extend(perm);
    }
    let mut examples = Vec::with_capacity(order.len());
    for g in order {
        // One puzzle of the group, then one example of that puzzle.
        let (p0, p1) = (split.group_indices[g] as usize, split.group_indices[g + 1] as usize);
        let p = rng.random_range(p0..p1);
        let (e0, e1) = (split.puzzle_indices[p] as usize, split.puzzle_indices[p + 1] as usize);
        examples.push(rng.random_range(e0..e1));
    }
    // chunks_exact drops the last partial batch, as the reference does.
    examples.chunks_exact(batch_size).map(|c| c.to_vec()).collect()
}

/// Tokens, labels and puzzle ids of some examples, flattened row-major.
pub struct HostBatch {
    /// `[n · seq_len]` input tokens.
    pub inputs: Vec<i32>,
    /// `[n · seq_len]` labels.
    pub labels: Vec<i32>,
    /// `[n]` puzzle identifiers.
    pub puzzle_identifiers: Vec<i32>,
}

/// Gathers examples `rows` of `split`.
pub fn host_batch(split: &SplitData, rows: &[usize]) -> HostBatch {
    let mut inputs = Vec::with_capacity(rows.len() * split.seq_len);
    let mut labels = Vec::with_capacity(rows.len() * split.seq_len);
    let mut ids = Vec::with_capacity(rows.len());
    for &i in rows {
        inputs.extend(split.input(i).iter().map(|&t| t as i32));
        labels.extend(split.label(i).iter().map(|&t| t as i32));
        // Puzzle ids are per puzzle; find the puzzle holding example i.
        let p = split.puzzle_indices.partition_point(|&s| s as usize <= i).saturating_sub(1);
        ids.push(split.puzzle_identifiers.get(p).copied().unwrap_or(0));
    }
    HostBatch { inputs, labels, puzzle_identifiers: ids }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(n: usize) -> SplitData {
        SplitData::from_examples(2, (0..n).map(|i| (vec![1, i as u8 % 5 + 1], vec![1, 2])).collect())
    }

    #[test]
    fn every_group_once_per_epoch_and_partial_batch_dropped() {
        let s = split(10);
        let batches = iteration_batches(&s, 7, 0, 3, 4);
        // 30 draws, batches of 4: 7 full batches, 2 draws dropped.
        assert_eq!(batches.len(), 7);
        let flat: Vec<usize> = batches.concat();
        for epoch in flat.chunks(10).take(2) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn order_is_seeded_per_iteration() {
        let s = split(20);
        assert_eq!(iteration_batches(&s, 1, 3, 1, 5), iteration_batches(&s, 1, 3, 1, 5));
        assert_ne!(iteration_batches(&s, 1, 3, 1, 5), iteration_batches(&s, 1, 4, 1, 5));
        assert_ne!(iteration_batches(&s, 1, 3, 1, 5), iteration_batches(&s, 2, 3, 1, 5));
    }

    #[test]
    fn host_batch_gathers_rows() {
        let s = split(4);
        let b = host_batch(&s, &[2, 0]);
        assert_eq!(b.inputs, vec![1, 3, 1, 1]);
        assert_eq!(b.labels, vec![1, 2, 1, 2]);
        assert_eq!(b.puzzle_identifiers, vec![0, 0]);
    }
}
