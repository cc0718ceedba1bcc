//! One module per subcommand.
pub mod dataset;
pub mod generate;
pub mod maze;
pub mod prepare_dataset;
pub mod bench;
pub mod download_weights;
pub mod eval;
pub mod predict;
pub mod serve;
pub mod loadtest;
pub mod train;
pub mod runs;
