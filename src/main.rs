//! The `promrelay` command line: thin, everything lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use promrelay::config::Config;
use promrelay::relay::{Relay, shutdown_signal};
use promrelay::telemetry::{LogFormat, LogLevel, build, init_logging};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "promrelay",
    version = build::VERSION_LINE,
    about = "Prometheus data delivery: remote_write in, filtered and labelled out",
    after_help = "`promrelay help COMMAND` shows a command's flags."
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
        /// Also reload when the config file (or a task file) changes, checked this often
        /// (e.g. 30s). SIGHUP and POST /-/reload always reload.
        #[arg(long = "config.auto-reload-interval", value_name = "DURATION", value_parser = parse_interval)]
        auto_reload_interval: Option<std::time::Duration>,
        /// Only log messages at this level or above. RUST_LOG, when set, overrides it.
        #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
        log_level: LogLevel,
        /// Log line format: logfmt (key=value) or json (one object a line).
        #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
        log_format: LogFormat,
    },
    /// Validate a config file and exit: 0 when it is valid, 2 with the field and reason when not.
    CheckConfig {
        /// The YAML config file.
        file: PathBuf,
    },
    /// Measure filter throughput: in-process through a config's tasks, or over HTTP against a
    /// running relay (or any remote-write receiver) on this machine.
    Bench {
        /// Config whose tasks run in-process (default: a built-in 2-condition filter).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Drive this remote-write URL over HTTP instead (loopback addresses only).
        #[arg(long)]
        url: Option<String>,
        /// With --url or --kafka-brokers: the relay's process id, to report its CPU seconds and
        /// peak RSS.
        #[arg(long)]
        pid: Option<u32>,
        /// With --url: concurrent connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// With --url: send at most this many samples per second in all, on a fixed schedule
        /// (default: as fast as the receiver answers).
        #[arg(long)]
        rate: Option<u64>,
        /// In-process: threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// In-process: stop each thread after N requests (a fixed amount of work).
        #[arg(long, value_name = "N")]
        requests: Option<u64>,
        /// Series per request.
        #[arg(long, default_value_t = 2000)]
        series: usize,
        /// Labels per series, including __name__ (6 to 18).
        #[arg(long, default_value_t = 10)]
        labels: usize,
        /// Samples per series.
        #[arg(long, default_value_t = 1)]
        samples_per_series: usize,
        /// Distinct hosts (the cardinality of instance/id).
        #[arg(long, default_value_t = 500)]
        hosts: usize,
        /// Seed of the generated workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Drive a relay's Kafka source instead: produce --messages generated messages (one
        /// request's samples each, the seed's JSON) to --kafka-topic on these brokers (loopback
        /// only), then measure the relay reading them (needs --metrics-url; --pid for CPU).
        #[arg(long, value_name = "HOST:PORT")]
        kafka_brokers: Option<String>,
        /// With --kafka-brokers: the topic the relay's Kafka source reads.
        #[arg(long, default_value = "metrics")]
        kafka_topic: String,
        /// With --kafka-brokers: how many messages to produce.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// With --kafka-brokers: the relay's /metrics URL (comma-separated for several relays
        /// in one group: their reads are summed).
        #[arg(long, default_value = "http://127.0.0.1:9201/metrics")]
        metrics_url: String,
    },
    /// A remote-write receiver that answers 204 to everything (a load target for benchmarks).
    Blackhole {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:9301")]
        listen: std::net::SocketAddr,
        /// Answer each request this many milliseconds after reading it (a slow receiver).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Manage the delivery tasks of a running relay through its admin API.
    Tasks {
        /// The relay's admin address, e.g. http://127.0.0.1:9201.
        #[arg(long, default_value = "http://127.0.0.1:9201")]
        url: String,
        /// A file holding the bearer token the relay's server.admin requires.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        action: TasksAction,
    },
    /// Probe every target of the config's tasks (or of one) and print one line per check, ✓ or
    /// ✗ with the fix. Exit 0 when every check passed, 1 when one failed, 2 for a bad config.
    Verify {
        /// The YAML config file.
        #[arg(long, short, default_value = "promrelay.yaml")]
        config: PathBuf,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Kafka targets: produce one message holding an empty JSON array and wait for its
        /// delivery report.
        #[arg(long)]
        produce_test: bool,
        /// text (one line per check) or json (for scripts).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Print what a task's target receives, one JSON sample per line, from a running relay's
    /// tap; the trailer (samples sent, skipped) goes to standard error.
    Tap {
        /// The relay's admin address, e.g. http://127.0.0.1:9201.
        #[arg(long, default_value = "http://127.0.0.1:9201")]
        url: String,
        /// The task.
        #[arg(long)]
        task: String,
        /// The target (default: the task's first).
        #[arg(long)]
        target: Option<String>,
        /// Stop after N samples.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// At most R samples per second (the relay's default is 10000, its most 100000); the
        /// rest is skipped and counted in the trailer.
        #[arg(long, value_name = "R")]
        rate: Option<u64>,
        /// A file holding the bearer token the relay's server.admin requires.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Read a Kafka topic, decompress, and print one JSON sample per line.
    KafkaTail {
        /// Comma-separated host:port list.
        #[arg(long)]
        brokers: String,
        /// The topic to read.
        #[arg(long)]
        topic: String,
        /// Start at the oldest message instead of the newest.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after printing N samples.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Consumer group (offsets are committed only with one).
        #[arg(long)]
        group: Option<String>,
        /// Payload format written by the target: json (the default) or remote_write.
        #[arg(long, default_value = "json", value_parser = ["json", "remote_write"])]
        format: String,
        /// Payload compression: snappy (raw block format, the default) or none.
        #[arg(long, default_value = "snappy", value_parser = ["snappy", "none"])]
        compression: String,
        /// Exit after this many seconds without a message.
        #[arg(long, value_name = "SECONDS")]
        idle_exit: Option<f64>,
        /// Extra librdkafka consumer setting, KEY=VALUE (repeatable), e.g. security.protocol=ssl.
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TasksAction {
    /// One line per task: name, source, enabled, matched samples/s, each target's state.
    List,
    /// A task's config as YAML (secrets hidden).
    Get {
        /// The task's name.
        name: String,
    },
    /// Create or update every task of a task file (`tasks: [...]`).
    Apply {
        /// The task file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete a task the API manages.
    Delete {
        /// The task's name.
        name: String,
    },
    /// Enable a task.
    Enable {
        /// The task's name.
        name: String,
    },
    /// Disable a task (it stops receiving data; its config stays).
    Disable {
        /// The task's name.
        name: String,
    },
}

fn verify_command(
    file: &std::path::Path,
    task: Option<&str>,
    produce_test: bool,
    json: bool,
) -> ExitCode {
    use promrelay::admin::verify::{render_text, verify_task};
    let cfg = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let tasks: Vec<_> = cfg
        .tasks
        .iter()
        .filter(|t| task.is_none_or(|n| t.name == n))
        .collect();
    if tasks.is_empty() {
        eprintln!(
            "{}: no task {}",
            file.display(),
            task.map_or("at all".to_owned(), |n| format!("named {n:?}"))
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("promrelay verify: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reports = rt.block_on(async {
        let mut reports = Vec::new();
        for t in tasks {
            reports.push(verify_task(t, produce_test).await);
        }
        reports
    });
    let ok = reports.iter().all(|r| r.ok);
    if json {
        let v = serde_json::json!({ "ok": ok, "tasks": reports });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render_text(&reports));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn tasks_command(url: &str, token_file: Option<&std::path::Path>, action: TasksAction) -> ExitCode {
    use promrelay::tools::tasks::{TasksClient, TasksError};
    let result = (|| {
        let token = token_file
            .map(|f| {
                std::fs::read_to_string(f)
                    .map_err(|e| TasksError::Usage(format!("{}: {e}", f.display())))
            })
            .transpose()?;
        let client = TasksClient::new(url, token.as_deref())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TasksError::Usage(e.to_string()))?;
        let mut out = std::io::stdout().lock();
        rt.block_on(async {
            match action {
                TasksAction::List => client.list(&mut out).await,
                TasksAction::Get { name } => client.get(&name, &mut out).await,
                TasksAction::Apply { file } => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| TasksError::Usage(format!("{}: {e}", file.display())))?;
                    client.apply(&text, &mut out).await
                }
                TasksAction::Delete { name } => client.act(&name, "delete", &mut out).await,
                TasksAction::Enable { name } => client.act(&name, "enable", &mut out).await,
                TasksAction::Disable { name } => client.act(&name, "disable", &mut out).await,
            }
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("promrelay tasks: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (level, format) = match &cli.command {
        Command::Run {
            log_level,
            log_format,
            ..
        } => (*log_level, *log_format),
        _ => (LogLevel::Info, LogFormat::Logfmt),
    };
    init_logging(level, format);
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
        Command::Verify {
            config,
            task,
            produce_test,
            output,
        } => verify_command(&config, task.as_deref(), produce_test, output == "json"),
        Command::Tap {
            url,
            task,
            target,
            limit,
            rate,
            token_file,
        } => {
            let token = match token_file.map(std::fs::read_to_string).transpose() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("--token-file: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = promrelay::tools::tap::TapOptions {
                url,
                task,
                target,
                limit,
                rate,
                token,
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("promrelay tap: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(promrelay::tools::tap::tap(
                &opts,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            ));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("promrelay tap: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::KafkaTail {
            brokers,
            topic,
            from_beginning,
            limit,
            group,
            format,
            compression,
            idle_exit,
            options,
        } => {
            let mut pairs = Vec::new();
            for o in options {
                let Some((k, v)) = o.split_once('=') else {
                    eprintln!("--option {o:?}: expected KEY=VALUE");
                    return ExitCode::from(2);
                };
                pairs.push((k.to_owned(), v.to_owned()));
            }
            let idle_exit = match idle_exit
                .map(std::time::Duration::try_from_secs_f64)
                .transpose()
            {
                Ok(d) => d,
                Err(_) => {
                    eprintln!("--idle-exit: expected a non-negative number of seconds");
                    return ExitCode::from(2);
                }
            };
            let opts = promrelay::tools::kafka_tail::TailOptions {
                brokers,
                topic,
                from_beginning,
                limit,
                group,
                remote_write: format == "remote_write",
                uncompressed: compression == "none",
                idle_exit,
                options: pairs,
            };
            match promrelay::tools::kafka_tail::tail(&opts, &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("promrelay kafka-tail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            config,
            url,
            pid,
            connections,
            rate,
            threads,
            duration,
            requests,
            series,
            labels,
            samples_per_series,
            hosts,
            seed,
            quiet,
            kafka_brokers,
            kafka_topic,
            messages,
            metrics_url,
        } => {
            let Ok(duration) = std::time::Duration::try_from_secs_f64(duration) else {
                eprintln!("--duration: expected a non-negative number of seconds");
                return ExitCode::from(2);
            };
            let spec = promrelay::tools::workload::WorkloadSpec {
                series,
                labels_per_series: labels.clamp(6, 18),
                samples_per_series: samples_per_series.max(1),
                hosts: hosts.max(1),
                seed,
                ..Default::default()
            };
            let report = if let Some(brokers) = kafka_brokers {
                let rt = match tokio::runtime::Runtime::new() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("promrelay bench: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let b = promrelay::tools::bench_kafka::KafkaBench {
                    brokers,
                    topic: kafka_topic,
                    messages,
                    metrics_url,
                    pid,
                    // --duration bounds the wait for the relay (at least a minute).
                    timeout: duration.max(std::time::Duration::from_secs(60)),
                };
                match rt.block_on(promrelay::tools::bench_kafka::through_kafka(&b, &spec)) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("promrelay bench: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else if let Some(url) = url {
                let rt = match tokio::runtime::Runtime::new() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("promrelay bench: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match rt.block_on(promrelay::tools::bench::over_http(
                    &url,
                    pid,
                    &spec,
                    connections,
                    rate,
                    duration,
                    !quiet,
                )) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("promrelay bench: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                let cfg = match config {
                    Some(path) => match Config::load(&path) {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("{}: {e}", path.display());
                            return ExitCode::from(2);
                        }
                    },
                    None => promrelay::tools::bench::default_config(),
                };
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                match promrelay::tools::bench::in_process(
                    cfg, &spec, threads, duration, requests, !quiet,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("promrelay bench: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            println!("{report}");
            ExitCode::SUCCESS
        }
        Command::Blackhole { listen, delay_ms } => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("promrelay blackhole: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(promrelay::tools::blackhole::blackhole(
                listen,
                std::time::Duration::from_millis(delay_ms),
                shutdown_signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("promrelay blackhole: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Tasks {
            url,
            token_file,
            action,
        } => tasks_command(&url, token_file.as_deref(), action),
        Command::Run {
            config,
            auto_reload_interval,
            ..
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            match run(cfg, config, auto_reload_interval) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("promrelay: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A duration flag in the config's own syntax (`30s`, `1m`); at least 1 s.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = promrelay::config::parse_duration(text)?;
    if d < std::time::Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

fn run(cfg: Config, file: PathBuf, auto_reload: Option<std::time::Duration>) -> anyhow::Result<()> {
    // Before anything is opened, and before the listeners size their connection caps to it.
    use promrelay::sources::http::{OpenFilesLimit, raise_open_files_limit};
    match raise_open_files_limit() {
        OpenFilesLimit::Raised {
            before,
            after,
            by_nr_open,
        } => {
            let cap = if by_nr_open {
                "the kernel's fs.nr_open"
            } else {
                "the hard limit"
            };
            tracing::info!(
                "raised the open-files limit (ulimit -n) from {before} to {after}, {cap}"
            );
        }
        OpenFilesLimit::Unchanged => {}
        OpenFilesLimit::Refused { soft, error } => tracing::warn!(
            "could not raise the open-files limit (ulimit -n) above {soft}: {error}; raise it \
             before starting the relay to serve more connections"
        ),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.server.shards)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let relay = Relay::start_with_file(cfg, Some(file))
            .await?
            .auto_reload(auto_reload);
        relay.serve(shutdown_signal()).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_flag_of_every_command_has_a_help_text() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.is_positional() && arg.get_id() == "help" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "promrelay {} --{}: no help text",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
