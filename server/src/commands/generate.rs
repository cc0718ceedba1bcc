//! `trm generate`: new hard mazes in the reference dataset layout.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use trm_shared::dataset::{SplitData, write_dataset};
use trm_shared::generate::{GenerateConfig, GeneratedMaze, MazeStats, Progress, generate_splits};

/// Arguments of `trm generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Maze side: `N` for N x N (also written `NxN`). The reference layout stores square
    /// mazes only (readers take the side as sqrt(seq_len)), so rows must equal columns here;
    /// rectangular mazes come from the library and the server's `/api/generate`.
    #[arg(long, default_value = "30", value_parser = parse_size)]
    pub size: (usize, usize),
    /// Number of training mazes (written to OUT/train).
    #[arg(long, default_value_t = 1000)]
    pub train: usize,
    /// Number of test mazes (written to OUT/test). No wall layout appears twice in train and test.
    #[arg(long, default_value_t = 1000)]
    pub test: usize,
    /// Keep only mazes whose shortest path has at least this many moves.
    /// Default: 109 at 30x30 (the benchmark); other sizes about as selective: 4.1 moves per
    /// unit of mean side minus 13.5 (68 at 20x20, 150 at 40x40), capped at a third of the
    /// open cells on small grids (5 at 5x5, 23 at 10x10).
    #[arg(long)]
    pub min_moves: Option<u32>,
    /// Seed of the generator: the same seed gives byte-identical files on any machine.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory; must not exist or be empty. Gets train/, test/ and identifiers.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Start and goal draws per wall layout before a new layout is drawn. 1 = a new layout
    /// after every rejection (closest to the benchmark's statistics, about 5x slower than
    /// 10); 100 = Searchformer's generator (fastest, slightly more paths at the minimum).
    #[arg(long, default_value_t = trm_shared::generate::DEFAULT_PAIR_TRIES)]
    pub pair_tries: u32,
    /// Fewest walls per maze. Default: 30% of the cells, rounded up (270 at 30x30).
    #[arg(long)]
    pub min_walls: Option<u32>,
    /// Most walls per maze. Default: 50% of the cells, rounded down (450 at 30x30).
    #[arg(long)]
    pub max_walls: Option<u32>,
    /// Worker threads (default: all cores). The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Parses `N` or `RxC` (also `RXC`, `R*C`).
fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let number = |s: &str| {
        s.trim().parse::<usize>().map_err(|_| format!("expected N or RxC with positive whole numbers, got {text:?}"))
    };
    let (rows, cols) = match text.split_once(['x', 'X', '*']) {
        Some((r, c)) => (number(r)?, number(c)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if rows == 0 || cols == 0 {
        return Err(format!("size must be at least 1 in each direction, got {text:?}"));
    }
    if rows != cols {
        return Err(format!(
            "{text:?} is not square: the reference dataset layout stores square mazes only (the side is sqrt(seq_len))"
        ));
    }
    Ok((rows, cols))
}

/// Runs `trm generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let (rows, cols) = args.size;
    let config = GenerateConfig {
        rows,
        cols,
        min_moves: args.min_moves,
        min_walls: args.min_walls,
        max_walls: args.max_walls,
        pair_tries: args.pair_tries,
        seed: args.seed,
        ..GenerateConfig::default()
    };
    // Refuse bad settings and an occupied output folder before spending any time.
    let counts = [args.train, args.test];
    let resolved = config.resolve_for(&counts).context("invalid generator settings")?;
    check_out_free(&args.out)?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        pool = pool.num_threads(threads);
    }
    let pool = pool.build().context("starting worker threads")?;

    eprintln!(
        "generating {} train + {} test mazes of {rows}x{cols}: {}..={} walls, at least {} moves, seed {}, {} threads",
        args.train,
        args.test,
        resolved.min_walls,
        resolved.max_walls,
        resolved.min_moves,
        args.seed,
        pool.current_num_threads()
    );
    let names = ["train", "test"];
    let bars: Vec<ProgressBar> = counts.iter().zip(names).map(|(&n, name)| split_bar(name, n as u64)).collect();
    let mut layouts = [0u64; 2];
    let started = Instant::now();
    let splits = pool
        .install(|| {
            generate_splits(&config, &counts, &mut |p: Progress| {
                let bar = &bars[p.split];
                if p.layouts == 0 {
                    // The bar's clock starts when its split does.
                    bar.reset_elapsed();
                }
                bar.set_position(p.found as u64);
                bar.set_message(format!("{} layouts", p.layouts));
                layouts[p.split] = p.layouts;
                if p.found == p.requested {
                    bar.finish();
                }
            })
        })
        .context("generating mazes")?;
    let elapsed = started.elapsed().as_secs_f64();

    let seq_len = rows * cols;
    let data: Vec<SplitData> = splits.iter().map(|mazes| to_split(seq_len, mazes)).collect();
    write_dataset(&args.out, &[(names[0], &data[0]), (names[1], &data[1])])
        .with_context(|| format!("writing {}", args.out.display()))?;

    for (name, mazes) in names.iter().zip(&splits) {
        if mazes.is_empty() {
            continue;
        }
        let stats = MazeStats::from_pairs(mazes.iter().map(|m| (&m.puzzle, &m.label)));
        println!("== {name}\n{stats}\n");
    }
    let total = splits.iter().map(Vec::len).sum::<usize>();
    let searched: u64 = layouts.iter().sum();
    println!(
        "{total} mazes in {elapsed:.1} s ({:.1} mazes/s, {searched} layouts searched, {:.0} layouts/s)",
        total as f64 / elapsed.max(1e-9),
        searched as f64 / elapsed.max(1e-9)
    );
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Fails early when `out` holds anything, so no generation time is wasted
/// (`write_dataset` checks again when it writes).
fn check_out_free(out: &Path) -> anyhow::Result<()> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("output directory {} exists and is not empty", out.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if out.exists() && !out.is_dir() => {
            bail!("output path {} exists and is not a directory ({e})", out.display())
        }
        Err(e) => Err(e).with_context(|| format!("checking output directory {}", out.display())),
    }
}

fn split_bar(name: &'static str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len).with_prefix(name);
    let style = ProgressStyle::with_template("{prefix:>5} [{bar:40}] {pos}/{len} mazes {elapsed_precise} eta {eta} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn to_split(seq_len: usize, mazes: &[GeneratedMaze]) -> SplitData {
    SplitData::from_examples(seq_len, mazes.iter().map(|m| (m.puzzle.tokens(), m.label.tokens())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("30"), Ok((30, 30)));
        assert_eq!(parse_size("12x12"), Ok((12, 12)));
        assert_eq!(parse_size("12X12"), Ok((12, 12)));
        assert!(parse_size("12x20").unwrap_err().contains("not square"));
        for bad in ["0", "0x5", "5x0", "x5", "abc", "-3", "5x", ""] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
