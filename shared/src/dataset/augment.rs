//! The reference builder's `--aug`: every maze of a split becomes a group of its 8 dihedral
//! views (`dataset/common.py::dihedral_transform`, ids 0..8 in order).

use super::{DatasetError, SplitData};
use crate::maze::dihedral_transform;

/// Number of views per maze with augmentation.
pub const AUGMENT_VIEWS: usize = 8;

/// Why `--aug` is not the default (`maze-hard.md` §3), for commands to print.
pub const AUGMENT_CAVEAT: &str = "warning: augmentation breaks the benchmark's label tie-break rule. \
A transformed label is the lex-min shortest path (down, left, right, up) of the transformed maze for the \
identity view, for about 93% of mazes under fliplr and for none under the other 6 transforms (measured on \
300 train mazes). Every puzzle identifier is 0, so the model cannot tell which convention a view follows \
(docs/maze-hard.md section 3; one reimplementation reports accuracy collapsing to ~5% with the augmented \
build). The reference README builds Maze-Hard without --aug.";

/// Applies the 8 dihedral transforms to each example of `split`, as the reference does:
/// the label grid is transformed, not recomputed, and the 8 views of a maze form one group
/// (group_indices 0, 8, 16, ...), each view its own puzzle.
///
/// Refuses a split that is already augmented (a group or puzzle with several members).
pub fn augment_dihedral(split: &SplitData) -> Result<SplitData, DatasetError> {
    let n = split.len();
    let plain: Vec<i32> = (0..=n as i32).collect();
    if split.puzzle_indices != plain || split.group_indices != plain {
        return Err(DatasetError::invalid(
            "augmentation",
            format!(
                "the split is already augmented or grouped ({} examples in {} groups); augment a plain split",
                n,
                split.total_groups()
            ),
        ));
    }
    let mut groups = Vec::with_capacity(n);
    for i in 0..n {
        let (input, label) = split.grids(i)?;
        groups.push(
            (0..AUGMENT_VIEWS as u8)
                .map(|t| (dihedral_transform(&input, t).tokens(), dihedral_transform(&label, t).tokens()))
                .collect(),
        );
    }
    Ok(SplitData::from_groups(split.seq_len, groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::{DIHEDRAL_INVERSE, Grid, label};

    fn split() -> SplitData {
        let mazes = ["S #\n   \n# G\n", " S \n # \n G \n"];
        SplitData::from_examples(
            9,
            mazes
                .iter()
                .map(|m| {
                    let g = Grid::parse_lines(m).unwrap();
                    (g.tokens(), label(&g).unwrap().tokens())
                })
                .collect(),
        )
    }

    #[test]
    fn layout_matches_the_reference() {
        let plain = split();
        let aug = augment_dihedral(&plain).unwrap();
        aug.validate("aug").unwrap();
        assert_eq!(aug.len(), 16);
        assert_eq!(aug.group_indices, [0, 8, 16]);
        assert_eq!(aug.puzzle_indices, (0..=16).collect::<Vec<i32>>());
        assert_eq!(aug.puzzle_identifiers, [0; 16]);
        let meta = aug.metadata();
        assert_eq!((meta.total_groups, meta.total_puzzles, meta.mean_puzzle_examples), (2, Some(2), 1.0));
    }

    #[test]
    fn views_are_transforms_of_input_and_label() {
        let plain = split();
        let aug = augment_dihedral(&plain).unwrap();
        for m in 0..plain.len() {
            let (input, lab) = plain.grids(m).unwrap();
            for t in 0..8u8 {
                let (vi, vl) = aug.grids(m * 8 + t as usize).unwrap();
                assert_eq!(vi, dihedral_transform(&input, t), "maze {m} view {t}");
                // The label is transformed, not recomputed: undoing the transform gives it back.
                assert_eq!(dihedral_transform(&vl, DIHEDRAL_INVERSE[t as usize]), lab, "maze {m} view {t}");
            }
            assert_eq!(aug.grids(m * 8).unwrap(), (input, lab), "view 0 is the identity");
        }
        // The second maze's label is not symmetric under all views: some transformed labels
        // stop following the lex-min rule, which is the caveat printed with --aug.
        assert!(aug.count_rule_labels().unwrap() < aug.len());
    }

    #[test]
    fn refuses_to_augment_twice() {
        let aug = augment_dihedral(&split()).unwrap();
        let err = augment_dihedral(&aug).unwrap_err().to_string();
        assert!(err.contains("already augmented"), "{err}");
    }
}
