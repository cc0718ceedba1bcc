//! Colours of the board: the Okabe-Ito palette, told apart with the common colour-vision
//! deficiencies, and backed by shapes (letters on S/G, dots for the path, crosses for
//! wrong cells) so that no meaning rests on colour alone. The legend in `index.html`'s
//! style sheet uses the same values.

/// Open cells.
pub const OPEN: &str = "#ffffff";
/// Lines between cells.
pub const GRID_LINE: &str = "#c8c8c8";
/// Walls.
pub const WALL: &str = "#1f1f1f";
/// The start (blue).
pub const START: &str = "#0072b2";
/// The goal (orange).
pub const GOAL: &str = "#e69f00";
/// The model's path (bluish green dots).
pub const PATH: &str = "#009e73";
/// The benchmark's optimal path (sky blue fill).
pub const OPTIMAL: &str = "#a6d8f5";
/// Cells the answer gets wrong (vermillion crosses).
pub const WRONG: &str = "#d55e00";
/// Letters on S and G.
pub const LETTER: &str = "#ffffff";
