//! `trm download-weights`: fetch a published TRM checkpoint (and its config, when the
//! repository has one) from the Hugging Face hub into a folder, check it, and say how to use it.
//!
//! Downloads go through the shared hub client (`HF_ENDPOINT`, hub cache, `HF_TOKEN`,
//! `HF_HUB_OFFLINE`): a progress bar, and the file's SHA-256 checked against the hub's LFS
//! etag. `--sha256` adds a check against a checksum the user knows.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use sha2::{Digest, Sha256};
use trm_shared::model::{StateDict, TrmConfig};

use crate::hub::{Hub, HubError, Repo};

/// Public Maze-Hard checkpoints: the TRM fork's (YuvrajSingh-mist) and alphaXiv's copy.
pub const DEFAULT_REPO: &str = "YuvrajSingh9886/maze-hard-trm";
/// The fork's final maze checkpoint in that repository.
pub const DEFAULT_FILE: &str = "step_32550";
/// Config files a checkpoint repository may carry, tried in order.
const CONFIG_FILES: &[&str] = &["all_config.yaml", "config.yaml"];

/// Arguments of `trm download-weights`.
#[derive(Args, Debug)]
pub struct DownloadWeightsArgs {
    /// Hugging Face model repository (`owner/name`), e.g. YuvrajSingh9886/maze-hard-trm or
    /// alphaXiv/trm-model-maze (whose file is maze_hard_step_32550).
    #[arg(long, default_value = DEFAULT_REPO)]
    pub repo: String,
    /// Checkpoint file in the repository.
    #[arg(long, default_value = DEFAULT_FILE)]
    pub file: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Folder to put the checkpoint and config in (default: weights/<name of the repo>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Expected SHA-256 of the checkpoint (hex), checked after download.
    #[arg(long)]
    pub sha256: Option<String>,
}

/// Runs `trm download-weights`.
pub fn run(args: DownloadWeightsArgs) -> anyhow::Result<()> {
    if !args.repo.contains('/') || args.repo.split('/').any(str::is_empty) {
        bail!("--repo must be OWNER/NAME, got {:?}", args.repo);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("weights").join(args.repo.rsplit('/').next().unwrap_or("trm")));
    let hub = Hub::from_env();
    let mut repo = Repo::model(&args.repo);
    repo.revision = args.revision.clone();

    let cached = hub.download(&repo, &args.file).map_err(|e| explain(e, &repo))?;
    let bytes = fs::read(&cached).with_context(|| format!("reading {}", cached.display()))?;
    let sha = hex(&Sha256::digest(&bytes));
    if let Some(expected) = &args.sha256
        && !expected.trim().eq_ignore_ascii_case(&sha)
    {
        bail!("{}: SHA-256 is {sha}, expected {}", args.file, expected.trim());
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let dest = out.join(&args.file);
    fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;

    // It must be a checkpoint we can read; name what is inside.
    let sd = StateDict::read(&dest).with_context(|| format!("{} is not a readable checkpoint", dest.display()))?;
    let params: usize = sd.tensors.values().map(|t| t.values.len()).sum();
    println!("{}: {} tensors, {params} values, SHA-256 {sha}", dest.display(), sd.tensors.len());

    let mut config_path = None;
    for name in CONFIG_FILES {
        match hub.download(&repo, name) {
            Ok(path) => {
                let dest = out.join(name);
                fs::copy(&path, &dest).with_context(|| format!("writing {}", dest.display()))?;
                TrmConfig::from_file(&dest).with_context(|| format!("{} is not a TRM config", dest.display()))?;
                config_path = Some(dest);
                break;
            }
            Err(HubError::NotFound { .. }) => continue,
            Err(e) => return Err(explain(e, &repo)),
        }
    }
    let config_path = match config_path {
        Some(p) => p,
        None => {
            // The maze checkpoints were trained with the README command: trm.yaml with
            // L_cycles 4 (not trm.yaml's 6, which the fork's own eval wrongly uses).
            let dest = out.join("config.toml");
            let mut cfg = TrmConfig::maze_7m();
            cfg.seq_len = None;
            cfg.vocab_size = None;
            cfg.num_puzzle_identifiers = None;
            fs::write(&dest, cfg.to_toml_string()?).with_context(|| format!("writing {}", dest.display()))?;
            tracing::warn!(
                "{} has no all_config.yaml; wrote the maze training config (L_cycles 4) to {}",
                args.repo,
                dest.display()
            );
            dest
        }
    };
    println!("config: {}", config_path.display());
    println!(
        "evaluate with: trm eval --checkpoint {} --config {} --data <dataset dir>",
        dest.display(),
        config_path.display()
    );
    Ok(())
}

fn explain(e: HubError, repo: &Repo) -> anyhow::Error {
    let offline = e.is_offline();
    let err = anyhow::Error::new(e);
    if offline {
        err.context(format!(
            "cannot download from {}; download the checkpoint elsewhere and pass it to --checkpoint, or set HF_ENDPOINT to a mirror",
            repo.web_url()
        ))
    } else {
        err
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
