//! The `promrelay` command line: thin, everything lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use promrelay::config::Config;
use promrelay::relay::{Relay, shutdown_signal};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "promrelay",
    version,
    about = "Prometheus data delivery: remote_write in, filtered and labelled out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Run {
        /// The YAML config file.
        #[arg(long, short, default_value = "promrelay.yaml")]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 when it is valid, 2 with the field and reason when not.
    CheckConfig {
        /// The YAML config file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    promrelay::telemetry::init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                let targets: usize = cfg.tasks.iter().map(|t| t.targets.len()).sum();
                println!(
                    "{}: valid ({} sources, {} tasks, {} targets)",
                    file.display(),
                    cfg.sources.len(),
                    cfg.tasks.len(),
                    targets
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("promrelay: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let relay = Relay::start(cfg).await?;
        relay.serve(shutdown_signal()).await;
        Ok(())
    })
}
