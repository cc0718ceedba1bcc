//! Where does the size-general model's process go wrong? Runs a model on mazes of a dataset
//! split and compares, at every tick, what its auxiliary head reads out (which cells the wave
//! from G has reached, each reached cell's choice) and what its answer head reads out with the
//! label rule's own process (`trm_shared::maze::Wave`).
//!
//! ```text
//! cargo run --release --example process_errors -- \
//!     public/models/default/model.safetensors public/models/default/config.toml \
//!     ../shared/data/maze-30x30-hard-1k/train 20 36
//! ```
//!
//! Arguments: weights, config, a split directory (reference layout), how many of its mazes,
//! and how many ACT steps. It prints, per ACT step, the cells wrong at the step's last tick
//! (read from the answer state `y`); then at which tick of the step a right choice turns
//! wrong, and how many wrong choices still point one move closer to G (a shortest route with
//! another tie-break).

use std::path::Path;

use anyhow::{Context, bail};
use burn::backend::Flex;
use burn::prelude::*;
use trm_server::inputs::read_inputs;
use trm_shared::maze::wave::{dir, pointed};
use trm_shared::maze::{Cell, Wave};
use trm_shared::model::{GridShape, LocalConfig, LocalTrm};

type B = Flex;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        bail!("usage: process_errors WEIGHTS CONFIG SPLIT_DIR MAZES STEPS");
    }
    let config = LocalConfig::from_toml_str(&std::fs::read_to_string(&args[1]).with_context(|| args[1].clone())?)?;
    if config.h_cycles != 1 {
        bail!("this report reads every tick, so it needs H_cycles = 1 (found {})", config.h_cycles);
    }
    let device = Default::default();
    let weights = std::fs::read(&args[0]).with_context(|| args[0].clone())?;
    let model = LocalTrm::<B>::from_safetensors_bytes(&config, &weights, &args[0], &device)?;
    let inputs = read_inputs(Path::new(&args[2]))?;
    let mazes: usize = args[3].parse().context("MAZES")?;
    let steps: usize = args[4].parse().context("STEPS")?;
    let mazes = mazes.min(inputs.len());
    let (rows, cols) = inputs.shape;
    let cells = rows * cols;
    let grid = GridShape { rows, cols };
    let ticks = config.ticks_per_step();

    let mut waves = Vec::with_capacity(mazes);
    for m in 0..mazes {
        waves.push(Wave::new(&inputs.grid_of(&inputs.tokens, m)?)?);
    }
    let tokens: Vec<i64> = inputs.tokens[..mazes * cells].iter().map(|&t| i64::from(t)).collect();
    let x = model.input_embeddings(Tensor::from_data(TensorData::new(tokens, [mazes, cells]), &device), None);
    let mut carry = model.initial_carry(mazes, cells, None);

    let mut was_wrong = vec![false; mazes * cells];
    let mut born = vec![0usize; ticks];
    let (mut wrong_choices, mut other_route) = (0usize, 0usize);
    println!("ACT step: cells wrong at its last tick, over {mazes} mazes (reached / choice on the route ahead of the trace / choice elsewhere / answer)");
    for step in 0..steps {
        let (next, out) = model.step(carry, &x, grid, None, true);
        carry = next;
        for (j, state) in out.ticks.into_iter().enumerate() {
            let t = (step * ticks + j + 1) as u32;
            let last = j + 1 == ticks;
            let (logits, aux) = model.readout(state);
            let answer: Vec<i64> = logits.argmax(2).into_data().convert::<i64>().iter::<i64>().collect();
            let reached: Vec<f32> = aux.clone().narrow(2, 0, 1).into_data().convert::<f32>().iter::<f32>().collect();
            let choice: Vec<i64> = aux.narrow(2, 1, dir::COUNT).argmax(2).into_data().convert::<i64>().iter::<i64>().collect();
            let mut wrong = [0usize; 4];
            for (m, wave) in waves.iter().enumerate() {
                for i in 0..cells {
                    let k = m * cells + i;
                    if !Cell::from_token(inputs.tokens[k]).is_some_and(|c| c.is_passable()) {
                        continue;
                    }
                    let (re, ch, token) = wave.state_at(i, t);
                    wrong[0] += usize::from((reached[k] > 0.0) != re);
                    let choice_wrong = re && choice[k] as u8 != ch;
                    // A flip: right one tick, wrong the next (not the tick the wave arrives).
                    if choice_wrong && !was_wrong[k] && wave.dist[i] + 1 < t {
                        born[j] += 1;
                    }
                    was_wrong[k] = choice_wrong;
                    if choice_wrong && last {
                        let ahead = wave.traced[i] != u32::MAX && t <= wave.traced[i];
                        wrong[if ahead { 1 } else { 2 }] += 1;
                        wrong_choices += 1;
                        let closer = pointed(i, choice[k] as u8, rows, cols).is_some_and(|n| wave.dist[n] != u32::MAX && wave.dist[n] + 1 == wave.dist[i]);
                        other_route += usize::from(closer);
                    }
                    wrong[3] += usize::from(last && answer[k] as u8 != token);
                }
            }
            if last {
                println!("{:3}: {:5} {:5} {:5} {:5}", step + 1, wrong[0], wrong[1], wrong[2], wrong[3]);
            }
        }
    }
    println!("right choices that turn wrong, by tick of the ACT step (the last is the answer update): {born:?}");
    println!("wrong choices at the steps' last ticks: {wrong_choices}, of which {other_route} point one move closer to G");
    Ok(())
}
