//! `trm dataset ...`: looking at datasets in the reference npy layout.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use trm_shared::dataset::{SplitData, read_dataset_dir, read_split};
use trm_shared::generate::MazeStats;
use trm_shared::maze::square_side;

/// Arguments of `trm dataset`.
#[derive(Args, Debug)]
pub struct DatasetArgs {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

/// Subcommands of `trm dataset`.
#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Counts, walls, shortest-path lengths and how many labels follow the benchmark's
    /// rule, per split.
    Stats(StatsArgs),
}

/// Arguments of `trm dataset stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A dataset directory (with train/ and test/) or a single split folder.
    pub dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trm dataset`.
pub fn run(args: DatasetArgs) -> anyhow::Result<()> {
    match args.command {
        DatasetCommand::Stats(args) => stats(args),
    }
}

/// Statistics of one split.
struct SplitStats {
    name: String,
    examples: usize,
    puzzles: usize,
    groups: usize,
    side: usize,
    /// Labels equal to the benchmark's lex-min label.
    follows_rule: usize,
    stats: MazeStats,
}

fn split_stats(name: String, split: &SplitData) -> anyhow::Result<SplitStats> {
    let side = square_side(split.seq_len).with_context(|| format!("split {name}: seq_len {}", split.seq_len))?;
    let stats = MazeStats::from_tokens(side, side, &split.inputs, &split.labels)
        .with_context(|| format!("split {name}: not a maze dataset"))?;
    // The share is a ratio of whole numbers; rounding recovers the count exactly.
    let follows_rule = (stats.share_label_rule * stats.count as f64).round() as usize;
    Ok(SplitStats {
        examples: split.len(),
        puzzles: split.puzzle_identifiers.len(),
        groups: split.total_groups(),
        side,
        follows_rule,
        stats,
        name,
    })
}

fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let splits = load(&args.dir)?;
    let stats = splits.iter().map(|(n, s)| split_stats(n.clone(), s)).collect::<anyhow::Result<Vec<_>>>()?;
    if args.json {
        let mut map = serde_json::Map::new();
        for s in &stats {
            map.insert(
                s.name.clone(),
                json!({
                    "examples": s.examples,
                    "puzzles": s.puzzles,
                    "groups": s.groups,
                    "rows": s.side,
                    "cols": s.side,
                    "labels_following_rule": s.follows_rule,
                    "stats": s.stats,
                }),
            );
        }
        println!("{}", serde_json::to_string_pretty(&json!({ "dir": args.dir.display().to_string(), "splits": map }))?);
        return Ok(());
    }
    for (i, s) in stats.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("== {} ==", s.name);
        println!("examples {}  puzzles {}  groups {}  grid {}x{}", s.examples, s.puzzles, s.groups, s.side, s.side);
        println!("{}", s.stats);
        println!("labels following the rule: {} of {}", s.follows_rule, s.examples);
    }
    Ok(())
}

/// Reads a dataset directory, or a single split folder (one holding `dataset.json`).
fn load(dir: &Path) -> anyhow::Result<Vec<(String, SplitData)>> {
    if !dir.is_dir() {
        anyhow::bail!("{}: no such directory", dir.display());
    }
    if dir.join("dataset.json").is_file() {
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        return Ok(vec![(name, read_split(dir).context("reading the split")?)]);
    }
    read_dataset_dir(dir).context("reading the dataset")
}
