//! `trm eval`: accuracy of a checkpoint on a dataset split (the scoring is
//! [`trm_server::eval`], shared with the server's eval jobs), printed as a report or JSON.

use std::path::PathBuf;

use clap::Args;
use trm_server::eval::{EvalReport, EvalSpec, run_eval};

use crate::backend::{BackendKind, Matmul};
use crate::solve::maze_bar;

/// Arguments of `trm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint: a reference `step_N` file (torch.save) or safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Config: the reference's `all_config.yaml` or our TOML.
    #[arg(long)]
    pub config: PathBuf,
    /// Dataset directory holding the split folders (e.g. data/maze-30x30-hard-1k).
    #[arg(long)]
    pub data: PathBuf,
    /// Split to evaluate.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Mazes per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// ACT steps (default: halt_max_steps, as the reference). The size-general model by
    /// default stops each maze where its Q head says halt (at most halt_max_steps); with
    /// --steps every maze runs exactly that many, to score each step.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Only the first N mazes.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Threads evaluating batches side by side, each with its own copy of the model.
    /// Default: one per core (two at most) on --backend cpu, one on a GPU.
    #[arg(long)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub matmul: Matmul,
}

/// Runs `trm eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    args.matmul.apply(args.backend)?;
    let dir = args.data.join(&args.split);
    let split_dir = if dir.is_dir() { dir } else { args.data.clone() };
    let spec = EvalSpec {
        checkpoint: args.checkpoint,
        config: args.config,
        split_dir,
        batch_size: args.batch_size,
        steps: args.steps,
        limit: args.limit,
        backend: args.backend,
        workers: args.workers.unwrap_or(match args.backend {
            BackendKind::Cpu => std::thread::available_parallelism().map_or(1, |n| n.get()).min(2),
            _ => 1,
        }),
    };
    let bar = maze_bar(0, "eval");
    let report = run_eval(
        &spec,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        None,
    );
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &EvalReport) {
    println!("{} mazes from {}, checkpoint {}", r.count, r.data, r.checkpoint);
    println!("exact accuracy (all cells = label):   {:6.2}%", 100.0 * r.exact_accuracy);
    println!("valid shortest path (any optimum):   {:6.2}%", 100.0 * r.valid_shortest_accuracy);
    println!("token accuracy:                      {:6.2}%", 100.0 * r.token_accuracy);
    println!();
    println!("step  exact%  shortest%  token%  mean q_halt  q_halt>0");
    for s in &r.per_step {
        println!(
            "{:>4}  {:>6.2}  {:>9.2}  {:>6.2}  {:>11.3}  {:>7.1}%",
            s.step,
            100.0 * s.exact_accuracy,
            100.0 * s.valid_shortest_accuracy,
            100.0 * s.token_accuracy,
            s.mean_q_halt,
            100.0 * s.q_halt_positive
        );
    }
    println!();
    let h = &r.halting;
    match h.mean_first_halt_step {
        Some(m) => println!(
            "q_halt turns positive for {:.1}% of mazes, first at step {m:.2} on average; stopping there would score {:.2}% exact",
            100.0 * h.halted_fraction,
            100.0 * h.exact_accuracy_at_first_halt
        ),
        None => println!("q_halt never turns positive"),
    }
    println!("{:.2} mazes/s on {}, {} matmuls ({:.1} s)", r.mazes_per_second, r.backend, r.matmul, r.seconds);
}
