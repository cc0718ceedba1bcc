//! `trm prepare-dataset`: the benchmark in the reference npy layout, from the CSV release
//! (downloaded from the hub, or local), or from an npy copy, optionally with the 8x
//! dihedral augmentation of the train split.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use trm_shared::atomic;
use trm_shared::dataset::{
    AUGMENT_CAVEAT, CsvImport, SplitData, augment_dihedral, check_split, read_csv, read_split, write_dataset,
};

use crate::hub::{Hub, Repo};

/// The hub dataset the reference builder downloads.
pub const SOURCE_REPO: &str = "sapientinc/maze-30x30-hard-1k";
/// The two splits, in the order the reference builds them.
const SPLITS: [&str; 2] = ["train", "test"];

/// Arguments of `trm prepare-dataset`.
#[derive(Args, Debug)]
pub struct PrepareDatasetArgs {
    /// Local source directory: either the CSV release (train.csv and test.csv) or the npy
    /// layout (train/ and test/ split folders). Without it, the CSV release is downloaded
    /// from the Hugging Face hub (sapientinc/maze-30x30-hard-1k; HF_ENDPOINT and the
    /// standard cache HF_HOME / HF_HUB_CACHE are honoured).
    #[arg(long, value_name = "SRC")]
    pub from: Option<PathBuf>,
    /// Output directory; must not exist or be empty. Gets train/, test/ and identifiers.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Add the 8 dihedral views of every train maze, as the reference's --aug does
    /// (not recommended: it breaks the label tie-break rule; a warning explains).
    #[arg(long)]
    pub aug: bool,
}

/// Where the data comes from.
enum Source {
    /// `train.csv` and `test.csv`, in [`SPLITS`] order.
    Csv([PathBuf; 2]),
    /// A dataset directory with `train/` and `test/`.
    Npy(PathBuf),
}

/// Runs `trm prepare-dataset`.
pub fn run(args: PrepareDatasetArgs) -> anyhow::Result<()> {
    // Refuse a used output directory before any download or parsing.
    atomic::check_dir_free(&args.out).with_context(|| format!("output directory {}", args.out.display()))?;
    let source = match &args.from {
        Some(dir) => detect_source(dir)?,
        None => Source::Csv(download_release()?),
    };
    let mut splits = Vec::with_capacity(SPLITS.len());
    for (i, name) in SPLITS.into_iter().enumerate() {
        let (split, follows_rule) = match &source {
            Source::Csv(files) => {
                let CsvImport { split, follows_rule } = read_csv(&files[i]).context("importing the CSV release")?;
                (split, follows_rule)
            }
            Source::Npy(dir) => load_npy_split(&dir.join(name))?,
        };
        println!(
            "{name}: {} mazes ({}x{}), {} labels follow the benchmark rule",
            split.len(),
            side(&split),
            side(&split),
            follows_rule
        );
        splits.push((name, split));
    }
    if args.aug {
        let train = &mut splits[0].1;
        *train = augment_dihedral(train).context("augmenting the train split")?;
        println!("train: augmented to {} views in {} groups of 8", train.len(), train.total_groups());
        eprintln!("{AUGMENT_CAVEAT}");
    }
    let refs: Vec<(&str, &SplitData)> = splits.iter().map(|(n, s)| (*n, s)).collect();
    write_dataset(&args.out, &refs).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn side(split: &SplitData) -> usize {
    (split.seq_len as f64).sqrt().round() as usize
}

/// Decides whether `dir` holds the CSV release or the npy layout.
fn detect_source(dir: &Path) -> anyhow::Result<Source> {
    if !dir.is_dir() {
        bail!("--from {}: no such directory", dir.display());
    }
    let has = |p: &str| dir.join(p).is_file();
    if has("train.csv") && has("test.csv") {
        return Ok(Source::Csv(SPLITS.map(|n| dir.join(format!("{n}.csv")))));
    }
    if has("train/dataset.json") && has("test/dataset.json") {
        return Ok(Source::Npy(dir.to_path_buf()));
    }
    bail!(
        "--from {}: expected the CSV release (train.csv and test.csv) or the npy layout (train/ and test/ folders with dataset.json), found neither",
        dir.display()
    )
}

/// Reads one npy split and checks every example, as the CSV import does.
fn load_npy_split(dir: &Path) -> anyhow::Result<(SplitData, usize)> {
    let split = read_split(dir).context("reading the npy dataset")?;
    if let Some(i) = split.puzzle_identifiers.iter().position(|&id| id != 0) {
        bail!(
            "{}: puzzle identifier {} at puzzle {i}; maze datasets use only identifier 0 (<blank>)",
            dir.display(),
            split.puzzle_identifiers[i]
        );
    }
    let follows_rule = check_split(&split).with_context(|| format!("{}", dir.display()))?;
    Ok((split, follows_rule))
}

/// Downloads train.csv and test.csv of the release into the hub cache; returns their paths.
fn download_release() -> anyhow::Result<[PathBuf; 2]> {
    let hub = Hub::from_env();
    let repo = Repo::dataset(SOURCE_REPO);
    let fetch = |name: &str| {
        let file = format!("{name}.csv");
        hub.download(&repo, &file).map_err(|e| {
            let hint = if e.is_offline() {
                format!(
                    "; to work offline, get train.csv and test.csv from {} elsewhere and run `trm prepare-dataset --from DIR --out ...` (DIR may also be an npy copy of the benchmark), or set HF_ENDPOINT to a reachable mirror",
                    repo.web_url()
                )
            } else {
                String::new()
            };
            anyhow::anyhow!("downloading {file} of {SOURCE_REPO}: {e}{hint}")
        })
    };
    Ok([fetch(SPLITS[0])?, fetch(SPLITS[1])?])
}
