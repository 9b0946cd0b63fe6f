//! The `vaewatch` binary: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use vaewatch::alert::AlertPolicyConfig;
use vaewatch::commands;

/// mimalloc keeps freed memory for reuse: with the system allocator every large tensor of a
/// scoring batch was a fresh mapping, and page faults took about a third of the scoring time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vaewatch",
    version,
    about = "Watches equipment telemetry and raises an alert when a machine stops behaving like its normal self"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `vaewatch=debug`.
    #[arg(long, global = true, env = "VAEWATCH_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a model on normal history; writes a model directory.
    Train(TrainArgs),
    /// Backtest: run a model over history files; writes points, windows, alerts, summary, report.
    Replay(ReplayArgs),
    /// Synthetic plant telemetry with labelled faults, to a Parquet/CSV file or a Kafka topic.
    Simulate(SimulateArgs),
    /// Inspect models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// The daemon against real Kafka; runs until SIGTERM/SIGINT, then drains and exits.
    Run(RunArgs),
    /// The whole pipeline in one process with no setup: in-process Kafka, simulated plant, alerts.
    Demo(DemoArgs),
    /// Subscribers of the alert topic.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// A bare consumer with the daemon's client settings: reads N messages of a topic, does
    /// nothing with them and prints messages/s as JSON (the reference of scripts/bench_daemon.sh).
    BenchConsumer(BenchConsumerArgs),
}

#[derive(Args)]
struct BenchConsumerArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "VAEWATCH_KAFKA_BROKERS")]
    brokers: String,
    /// The topic to read from its start.
    #[arg(long)]
    topic: String,
    /// Messages to read.
    #[arg(long)]
    messages: u64,
    /// Give up when no message comes for this many seconds.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// librdkafka consumer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    properties: Vec<String>,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Print alert events as they arrive.
    Tail(TailArgs),
}

#[derive(Args)]
struct TailArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "VAEWATCH_KAFKA_BROKERS")]
    brokers: String,
    /// The alert topic.
    #[arg(long, default_value = "vaewatch.alerts")]
    topic: String,
    /// Print the topic's history first.
    #[arg(long)]
    from_beginning: bool,
    /// Print the events as JSON lines.
    #[arg(long)]
    json: bool,
    /// librdkafka consumer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    properties: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// The TOML config file (see docs/config.md).
    #[arg(long, env = "VAEWATCH_CONFIG")]
    config: PathBuf,
}

#[derive(Args)]
struct DemoArgs {
    /// Wall-clock length, e.g. `60s`, `2m`.
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Simulated seconds per second.
    #[arg(long, default_value_t = 60.0)]
    speedup: f64,
    /// Machines in the simulated plant.
    #[arg(long, default_value_t = 6)]
    machines: usize,
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// The model directory.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Where the archive goes (default: a new folder under the system temp dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Address of the metrics endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: std::net::SocketAddr,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// What a model is: channels, window, threshold, training data, metrics.
    Inspect {
        /// The model directory.
        model_dir: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Windows per second the model scores (synthetic windows, the daemon's scoring path);
    /// prints JSON. `scripts/bench_scoring.py` compares it with PyTorch and ONNX Runtime.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// The model directory.
    model_dir: PathBuf,
    /// Windows to score in the timed run.
    #[arg(long, default_value_t = 8192)]
    windows: usize,
    /// Windows per scoring call.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// `reconstruction` (one forward pass, comparable with a plain forward elsewhere),
    /// `cross_channel` or `model` (the model's own mode).
    #[arg(long, default_value = "model")]
    scoring: String,
    /// Score on the CPU even when a GPU is available (CPU threads: RAYON_NUM_THREADS).
    #[arg(long)]
    cpu: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// History files (Parquet or CSV); one or more.
    #[arg(long = "input", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Model directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Channels to use, comma-separated, in order (default: every numeric column).
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<String>>,
    /// Sample period in ms (default: inferred from the timestamps).
    #[arg(long)]
    sample_period: Option<i64>,
    /// Samples per window, a multiple of 8 (default: chosen from the history length).
    #[arg(long)]
    window: Option<usize>,
    /// Samples between scored windows (default: window / 16).
    #[arg(long)]
    stride: Option<usize>,
    /// Keep rows labelled anomalous (label = 1) in the training data.
    #[arg(long)]
    include_labelled: bool,
    /// Train only on rows at or after this time (RFC 3339 or epoch ms).
    #[arg(long)]
    from: Option<String>,
    /// Train only on rows before this time (RFC 3339 or epoch ms).
    #[arg(long)]
    until: Option<String>,
    /// Random seed (training is deterministic for a given seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most epochs.
    #[arg(long)]
    max_epochs: Option<usize>,
    /// TOML file of training options (see docs/training.md); flags given here win.
    #[arg(long)]
    options: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// The model directory.
    #[arg(long)]
    model: PathBuf,
    /// History files (Parquet or CSV); one or more.
    #[arg(long = "input", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Replace the model's calibrated threshold.
    #[arg(long)]
    threshold: Option<f32>,
    #[command(flatten)]
    alerts: AlertArgs,
    /// Count metrics only from this time on (RFC 3339 or epoch ms), e.g. after the training data.
    #[arg(long)]
    metrics_from: Option<String>,
    /// An alert up to this many seconds after a labelled event still detects it.
    #[arg(long, default_value_t = 0)]
    event_tolerance_secs: i64,
    /// Skip report.html.
    #[arg(long)]
    no_report: bool,
    /// Score on the CPU even when a GPU is available.
    #[arg(long)]
    cpu: bool,
}

#[derive(Args)]
struct AlertArgs {
    /// Windows above threshold among the last `alert-n` that open an alert.
    #[arg(long, default_value_t = AlertPolicyConfig::default().k)]
    alert_k: usize,
    /// Look-back, in windows, for opening an alert.
    #[arg(long, default_value_t = AlertPolicyConfig::default().n)]
    alert_n: usize,
    /// Windows in a row below threshold that resolve an alert.
    #[arg(long, default_value_t = AlertPolicyConfig::default().m)]
    alert_m: usize,
}

impl AlertArgs {
    fn config(&self) -> AlertPolicyConfig {
        AlertPolicyConfig {
            k: self.alert_k,
            n: self.alert_n,
            m: self.alert_m,
        }
    }
}

#[derive(Args)]
struct SimulateArgs {
    /// File to write (.parquet or .csv).
    #[arg(long, conflicts_with_all = ["brokers", "topic"])]
    out: Option<PathBuf>,
    /// Kafka bootstrap servers to publish telemetry messages to (with --topic).
    #[arg(long, requires = "topic")]
    brokers: Option<String>,
    /// Topic to publish to.
    #[arg(long, requires = "brokers")]
    topic: Option<String>,
    /// Publish about this many messages per second (default: as fast as possible).
    #[arg(long, conflicts_with = "speedup")]
    rate: Option<f64>,
    /// Publish simulated time this many times faster than real time.
    #[arg(long)]
    speedup: Option<f64>,
    /// librdkafka producer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Number of machines.
    #[arg(long, default_value_t = 4)]
    machines: usize,
    /// Length of the run, e.g. `3h`, `90m`, `600s`.
    #[arg(long, default_value = "3h")]
    duration: String,
    /// Time between samples of one machine, e.g. `1s`, `100ms`.
    #[arg(long, default_value = "1s")]
    period: String,
    /// Number of faults over the plant.
    #[arg(long)]
    faults: Option<usize>,
    /// Fault-free time at the start of the run, e.g. `24h` (default: 40 % of the run).
    #[arg(long)]
    fault_free: Option<String>,
    /// Random seed; the same seed gives the same plant.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own lines; its logs stay quiet unless asked for.
    let log = match (&cli.command, cli.log.as_str()) {
        (Command::Demo(_), "info") => "warn",
        (_, log) => log,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(args) => train(args),
        Command::Replay(args) => replay(args),
        Command::Simulate(args) => simulate(args),
        Command::Run(args) => daemon(args),
        Command::Demo(args) => demo(args),
        Command::Alerts(AlertsCommand::Tail(args)) => tail(args),
        Command::Model(ModelCommand::Inspect { model_dir, json }) => {
            print!("{}", commands::inspect::inspect(&model_dir, json)?);
            Ok(())
        }
        Command::Model(ModelCommand::Bench(args)) => bench(args),
        Command::BenchConsumer(args) => bench_consumer(args),
    }
}

fn bench_consumer(args: BenchConsumerArgs) -> Result<()> {
    let mut kafka = vaewatch::config::KafkaConfig {
        brokers: args.brokers,
        group_id: format!(
            "vaewatch-bench-consumer-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        ),
        ..vaewatch::config::KafkaConfig::default()
    };
    kafka.consumer.extend(parse_properties(&args.properties)?);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(commands::consume_bench::consume(
        &kafka,
        &args.topic,
        args.messages,
        std::time::Duration::from_secs(args.idle_secs.max(1)),
    ))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    let scoring = match args.scoring.as_str() {
        "model" => None,
        "reconstruction" => Some(vaewatch::model::Scoring::Reconstruction),
        "cross_channel" => Some(vaewatch::model::Scoring::CrossChannel),
        other => {
            anyhow::bail!("--scoring {other}: expected reconstruction, cross_channel or model")
        }
    };
    let report = commands::bench::bench(&commands::bench::BenchRequest {
        model_dir: args.model_dir,
        windows: args.windows,
        batch: args.batch,
        scoring,
        prefer_gpu: !args.cpu,
        seed: 1,
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let mut options = match &args.options {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--options: cannot read {}", path.display()))?;
            toml::from_str::<vaewatch::model::TrainOptions>(&text)
                .with_context(|| format!("--options: {} is not valid", path.display()))?
        }
        None => vaewatch::model::TrainOptions::default(),
    };
    options.seed = args.seed;
    options.progress = !args.quiet;
    if let Some(epochs) = args.max_epochs {
        options.max_epochs = epochs;
    }
    let request = commands::train::TrainRequest {
        inputs: args.inputs,
        out: args.out.clone(),
        channels: args.channels,
        sample_period_ms: args.sample_period,
        window: args.window,
        stride: args.stride,
        include_labelled: args.include_labelled,
        from_ms: parse_time_arg("--from", args.from.as_deref())?,
        until_ms: parse_time_arg("--until", args.until.as_deref())?,
        options,
    };
    let report = commands::train::train(&request)?;
    println!(
        "model {} written to {} ({} training windows, window {} x {} ms, stride {}, threshold {:.4})",
        report.model_id,
        args.out.display(),
        report.training_windows,
        report.windowing.window,
        report.windowing.sample_period_ms,
        report.windowing.stride,
        report.trained.manifest().threshold.value,
    );
    if report.labelled_rows_left_out > 0 {
        println!(
            "{} rows labelled anomalous were left out of training",
            report.labelled_rows_left_out
        );
    }
    Ok(())
}

fn replay(args: ReplayArgs) -> Result<()> {
    let metrics_from_ms = parse_time_arg("--metrics-from", args.metrics_from.as_deref())?;
    let request = vaewatch::replay::ReplayRequest {
        model_dir: args.model,
        inputs: args.inputs,
        out: args.out.clone(),
        threshold: args.threshold,
        alerts: args.alerts.config(),
        metrics_from_ms,
        event_tolerance_ms: args.event_tolerance_secs.saturating_mul(1000),
        report: !args.no_report,
        prefer_gpu: !args.cpu,
    };
    let summary = vaewatch::replay::replay(&request)?;
    println!("{}", commands::replay_summary_text(&summary, &args.out));
    Ok(())
}

fn parse_time_arg(flag: &str, text: Option<&str>) -> Result<Option<i64>> {
    text.map(|text| {
        vaewatch::telemetry::timestamp::parse_history_ts_ms(text)
            .with_context(|| format!("{flag}: cannot read {text:?} as a time"))
    })
    .transpose()
}

fn simulate(args: SimulateArgs) -> Result<()> {
    let duration_ms = commands::parse_duration_ms(&args.duration).context("--duration")?;
    let period_ms = commands::parse_duration_ms(&args.period).context("--period")?;
    let mut options = vaewatch::simulate::SimulateOptions {
        machines: args.machines,
        duration_ms,
        sample_period_ms: period_ms,
        seed: args.seed,
        ..Default::default()
    };
    if let Some(faults) = args.faults {
        options.faults = faults;
    }
    if let Some(fault_free) = &args.fault_free {
        let fault_free_ms = commands::parse_duration_ms(fault_free).context("--fault-free")?;
        if fault_free_ms >= duration_ms {
            anyhow::bail!(
                "--fault-free {fault_free} must be shorter than --duration {}",
                args.duration
            );
        }
        options.fault_free_fraction = fault_free_ms as f64 / duration_ms as f64;
    }
    if let Some(out) = &args.out {
        let summary = vaewatch::simulate::write_simulation(out, &options)?;
        println!(
            "{} rows of {} machines written to {} ({} rows inside {} faults)",
            summary.rows,
            summary.machines,
            out.display(),
            summary.labelled_rows,
            summary.faults.len()
        );
        for fault in &summary.faults {
            println!(
                "  fault {:<18} machine {:>2} from {} to {}",
                fault.kind.as_str(),
                fault.machine + 1,
                vaewatch::telemetry::timestamp::format_rfc3339_ms_clamped(fault.start_ms),
                vaewatch::telemetry::timestamp::format_rfc3339_ms_clamped(fault.end_ms)
            );
        }
        return Ok(());
    }
    let (Some(brokers), Some(topic)) = (&args.brokers, &args.topic) else {
        anyhow::bail!("give --out FILE, or --brokers and --topic to publish to Kafka");
    };
    let pacing = match (args.rate, args.speedup) {
        (Some(rate), _) => vaewatch::publish::Pacing::Rate(rate),
        (None, Some(speedup)) => vaewatch::publish::Pacing::Speedup(speedup),
        (None, None) => vaewatch::publish::Pacing::Unpaced,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut kafka = vaewatch::config::KafkaConfig {
            brokers: brokers.clone(),
            ..Default::default()
        };
        kafka.producer.extend(parse_properties(&args.properties)?);
        let producer = vaewatch::kafka::create_producer(&kafka)?;
        let mut plant = vaewatch::simulate::Plant::new(&options)?;
        let report = vaewatch::publish::publish_plant(
            &producer,
            topic,
            &mut plant,
            options.start_ms,
            pacing,
            || false,
        )
        .await?;
        println!(
            "{} telemetry messages published to {topic} ({} inside faults)",
            report.messages, report.fault_messages
        );
        anyhow::Ok(())
    })
}

fn parse_properties(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--property {pair:?}: expected KEY=VALUE"))
        })
        .collect()
}

fn daemon(args: RunArgs) -> Result<()> {
    let config = vaewatch::config::Config::load(&args.config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let metrics = std::sync::Arc::new(vaewatch::metrics::Metrics::new());
        let server =
            vaewatch::metrics::MetricsServer::bind(config.metrics.listen, metrics.clone()).await?;
        tracing::info!(address = %server.local_addr()?, "metrics and health endpoint listening");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let server_task = tokio::spawn(server.serve(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stop signal received: draining");
            let _ = stop_tx.send(true);
        });
        let report = vaewatch::daemon::run(config, metrics, stop_rx).await?;
        let _ = server_task.await;
        tracing::info!(
            messages = report.messages,
            windows = report.windows_scored,
            alerts = report.alerts_published,
            "stopped cleanly"
        );
        anyhow::Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn demo(args: DemoArgs) -> Result<()> {
    let duration_ms = commands::parse_duration_ms(&args.duration).context("--duration")?;
    let out_dir = match args.out {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("vaewatch-demo-{}", std::process::id())),
    };
    let options = vaewatch::demo::DemoOptions {
        duration_ms,
        speedup: args.speedup,
        machines: args.machines,
        seed: args.seed,
        model_dir: args.model,
        out_dir,
        metrics_listen: args.metrics_listen,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let summary = runtime.block_on(vaewatch::demo::run_demo(&options, |line| {
        println!("{line}")
    }))?;
    println!("{}", vaewatch::demo::summary_text(&summary));
    Ok(())
}

fn tail(args: TailArgs) -> Result<()> {
    let properties = parse_properties(&args.properties)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop_tx.send(true);
        });
        let json = args.json;
        vaewatch::tail::tail_alerts(
            &args.brokers,
            &args.topic,
            args.from_beginning,
            &properties,
            stop_rx,
            |event| {
                if json {
                    if let Ok(line) = serde_json::to_string(event) {
                        println!("{line}");
                    }
                } else {
                    println!("{}", vaewatch::tail::format_alert_line(event));
                }
            },
            |other| eprintln!("{other}"),
        )
        .await?;
        anyhow::Ok(())
    })
}
