//! `trm orchestrator`: burn-collective's global orchestrator, which the nodes of a multi-node
//! training run (`trm train --nodes N ...`) join before their first step.

use anyhow::Context;
use clap::Args;

/// Arguments of `trm orchestrator`.
#[derive(Args, Debug)]
pub struct OrchestratorArgs {
    /// Port to listen on (all interfaces); the nodes pass `--orchestrator ws://THIS_HOST:PORT`.
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
}

/// Runs the orchestrator until Ctrl-C or SIGTERM. It serves one run: burn-collective 0.21
/// keeps the node count of the first registration, so start a fresh one per run.
pub fn run(args: OrchestratorArgs) -> anyhow::Result<()> {
    // burn-collective only logs a failed bind and returns; check the port first.
    std::net::TcpListener::bind(("0.0.0.0", args.port)).with_context(|| format!("listening on port {}", args.port))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    eprintln!("orchestrator listening on ws://0.0.0.0:{} (Ctrl-C to stop)", args.port);
    runtime.block_on(burn_collective::start_global_orchestrator(args.port));
    Ok(())
}
