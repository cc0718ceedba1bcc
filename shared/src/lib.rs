//! Shared core of trm: the maze domain, dataset formats, the maze generator and the
//! Tiny Recursive Model. The server, the command line and the browser app all use it.

pub mod wire;
pub mod maze;
pub mod model;
pub mod dataset;
pub mod generate;
#[cfg(feature = "native")]
pub mod atomic;
#[cfg(test)]
mod fuzz;
