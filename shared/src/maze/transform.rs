//! The eight dihedral transforms, numbered as the reference's `dataset/common.py::dihedral_transform`.

use super::Grid;

/// A dihedral transform id, 0..8, in the reference's numbering:
/// 0 identity, 1-3 `rot90` with k = 1, 2, 3 (numpy's counter-clockwise rotation),
/// 4 `fliplr`, 5 `flipud`, 6 transpose, 7 `fliplr(rot90(k=1))`.
pub type Dihedral = u8;

/// `DIHEDRAL_INVERSE[t]` undoes transform `t` (the reference's `DIHEDRAL_INVERSE`).
pub const DIHEDRAL_INVERSE: [Dihedral; 8] = [0, 3, 2, 1, 4, 5, 6, 7];

/// Applies transform `id` to `grid`. Rotations by 90 degrees and transposes swap rows and columns.
///
/// # Panics
/// If `id >= 8`; ids come from code, not from users.
pub fn dihedral_transform(grid: &Grid, id: Dihedral) -> Grid {
    assert!(id < 8, "dihedral transform id {id} out of range 0..8");
    let (r, c) = (grid.rows(), grid.cols());
    let swaps = matches!(id, 1 | 3 | 6 | 7);
    let (out_rows, out_cols) = if swaps { (c, r) } else { (r, c) };
    // For each output cell (i, j), the source cell it copies.
    let source = |i: usize, j: usize| -> (usize, usize) {
        match id {
            0 => (i, j),
            1 => (j, c - 1 - i),
            2 => (r - 1 - i, c - 1 - j),
            3 => (r - 1 - j, i),
            4 => (i, c - 1 - j),
            5 => (r - 1 - i, j),
            6 => (j, i),
            _ => (r - 1 - j, c - 1 - i),
        }
    };
    let cells = (0..out_rows * out_cols)
        .map(|k| {
            let (si, sj) = source(k / out_cols, k % out_cols);
            grid.get(si, sj)
        })
        .collect();
    Grid::from_cells(out_rows, out_cols, cells).expect("a transform keeps the cell count")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::Cell;

    /// A 2x3 grid whose cells are all distinguishable by position when read as tokens.
    fn sample() -> Grid {
        Grid::parse_lines("#S \noG#\n").unwrap()
    }

    #[test]
    fn matches_numpy() {
        // Expected outputs written out from numpy's definitions for the array
        // [[a, b, c], [d, e, f]] = [["#","S"," "],["o","G","#"]].
        let expect = |s: &str| Grid::parse_lines(s).unwrap();
        let g = sample();
        assert_eq!(dihedral_transform(&g, 0), g);
        assert_eq!(dihedral_transform(&g, 1), expect(" #\nSG\n#o\n")); // rot90: [[c,f],[b,e],[a,d]]
        assert_eq!(dihedral_transform(&g, 2), expect("#Go\n S#\n")); // [[f,e,d],[c,b,a]]
        assert_eq!(dihedral_transform(&g, 3), expect("o#\nGS\n# \n")); // [[d,a],[e,b],[f,c]]
        assert_eq!(dihedral_transform(&g, 4), expect(" S#\n#Go\n"));
        assert_eq!(dihedral_transform(&g, 5), expect("oG#\n#S \n"));
        assert_eq!(dihedral_transform(&g, 6), expect("#o\nSG\n #\n"));
        assert_eq!(dihedral_transform(&g, 7), expect("# \nGS\no#\n")); // fliplr([[c,f],[b,e],[a,d]])
    }

    #[test]
    fn inverses_round_trip() {
        let g = sample();
        for t in 0..8 {
            let back = dihedral_transform(&dihedral_transform(&g, t), DIHEDRAL_INVERSE[t as usize]);
            assert_eq!(back, g, "transform {t}");
        }
        // All eight images of an asymmetric grid differ.
        let square = Grid::parse_lines("#S \n G \n  o\n").unwrap();
        let images: std::collections::HashSet<_> = (0..8).map(|t| dihedral_transform(&square, t)).collect();
        assert_eq!(images.len(), 8);
        assert_eq!(dihedral_transform(&square, 6).get(1, 0), Cell::Start);
    }
}
