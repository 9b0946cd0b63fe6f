//! The command line of the `vaewatch` binary: every command's arguments and how they become the
//! library's requests.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use vaewatch::alert::AlertPolicyConfig;
use vaewatch::commands::{self, parse_duration_ms, values::parse_time_ms};
use vaewatch::model::Scoring;
use vaewatch::publish::Pacing;

use crate::generative::{ExplainArgs, SampleArgs};

#[derive(Parser)]
#[command(
    name = "vaewatch",
    version,
    about = "Watches equipment telemetry and raises an alert when a machine stops behaving like its normal self"
)]
pub(crate) struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `vaewatch=debug`.
    #[arg(long, global = true, env = "VAEWATCH_LOG", default_value = "info")]
    pub(crate) log: String,
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line, for a
    /// log collector).
    #[arg(
        long,
        global = true,
        env = "VAEWATCH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Fit a model on normal history; writes a model directory.
    Train(TrainArgs),
    /// Backtest: run a model over history files; writes points, windows, alerts, summary, report.
    Replay(ReplayArgs),
    /// Synthetic plant telemetry with labelled faults, to a Parquet/CSV file or a Kafka topic.
    Simulate(SimulateArgs),
    /// Synthetic normal windows drawn from a model, in engineering units, to a Parquet file.
    Sample(SampleArgs),
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
    /// Tell the daemons that a machine goes into maintenance (or, with --end, that it is over):
    /// its windows raise no alert meanwhile and are archived as maintenance.
    Maintenance(MaintenanceArgs),
    /// A bare consumer with the daemon's client settings: reads N messages of a topic, does
    /// nothing with them and prints messages/s as JSON (the reference of scripts/bench_daemon.sh).
    BenchConsumer(BenchConsumerArgs),
}

#[derive(Args)]
pub(crate) struct BenchConsumerArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "VAEWATCH_KAFKA_BROKERS")]
    pub(crate) brokers: String,
    /// The topic to read from its start.
    #[arg(long)]
    pub(crate) topic: String,
    /// Messages to read.
    #[arg(long)]
    pub(crate) messages: u64,
    /// Give up when no message comes for this long, e.g. `30s` (`--idle-secs N` still reads N
    /// seconds).
    #[arg(long, alias = "idle-secs", default_value = "30s", value_parser = parse_duration_ms)]
    pub(crate) idle: i64,
    /// librdkafka consumer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    pub(crate) properties: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum AlertsCommand {
    /// Print alert events as they arrive.
    Tail(TailArgs),
    /// Tell the daemons that a machine's present behaviour is normal (a new operating point, a
    /// recalibrated sensor): its channels' present levels are accepted from now on.
    Accept(AcceptArgs),
    /// An alert's window beside what the model expected, channels ranked by their share of the
    /// error; prints them and writes a self-contained HTML page.
    Explain(ExplainArgs),
}

/// What a control message to the daemons names: the machine, where to send it, from when,
/// who and why.
#[derive(Args)]
pub(crate) struct ControlArgs {
    /// The machine (equipment id).
    pub(crate) equipment_id: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "VAEWATCH_KAFKA_BROKERS")]
    pub(crate) brokers: String,
    /// The daemons' control topic (`kafka.control_topic`).
    #[arg(
        long,
        env = "VAEWATCH_KAFKA_CONTROL_TOPIC",
        default_value = "vaewatch.control"
    )]
    pub(crate) topic: String,
    /// From when (RFC 3339 or epoch ms); now when not given.
    #[arg(long, value_parser = parse_time_ms)]
    pub(crate) at: Option<i64>,
    /// Who asks (kept in the daemon's log of the change).
    #[arg(long)]
    pub(crate) by: Option<String>,
    /// Why (kept in the daemon's log of the change).
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// librdkafka producer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    pub(crate) properties: Vec<String>,
}

impl ControlArgs {
    /// The control message asking `action`, ready to send.
    fn into_send(
        self,
        action: vaewatch::engine::ControlAction,
    ) -> Result<commands::control::ControlSend> {
        let equipment_id = vaewatch::telemetry::EquipmentId::try_from(self.equipment_id.as_str())
            .map_err(|e| {
            anyhow::anyhow!("invalid equipment id {:?}: {e}", self.equipment_id)
        })?;
        Ok(commands::control::ControlSend {
            properties: commands::values::parse_properties(&self.properties)?,
            brokers: self.brokers,
            topic: self.topic,
            request: vaewatch::engine::ControlRequest {
                action,
                equipment_id,
                at_ms: self
                    .at
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
                by: self.by,
                reason: self.reason,
            },
        })
    }
}

#[derive(Args)]
pub(crate) struct AcceptArgs {
    #[command(flatten)]
    pub(crate) control: ControlArgs,
    /// Forget what was accepted for the machine instead: score it against its training again.
    #[arg(long)]
    pub(crate) reset: bool,
}

impl AcceptArgs {
    pub(crate) fn into_request(self) -> Result<commands::control::ControlSend> {
        use vaewatch::engine::ControlAction;
        let action = if self.reset {
            ControlAction::ResetNormal
        } else {
            ControlAction::AcceptNormal
        };
        self.control.into_send(action)
    }
}

#[derive(Args)]
pub(crate) struct MaintenanceArgs {
    #[command(flatten)]
    pub(crate) control: ControlArgs,
    /// The maintenance is over: alert on the machine again.
    #[arg(long)]
    pub(crate) end: bool,
}

impl MaintenanceArgs {
    pub(crate) fn into_request(self) -> Result<commands::control::ControlSend> {
        use vaewatch::engine::ControlAction;
        let action = if self.end {
            ControlAction::EndMaintenance
        } else {
            ControlAction::StartMaintenance
        };
        self.control.into_send(action)
    }
}

#[derive(Args)]
pub(crate) struct TailArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "VAEWATCH_KAFKA_BROKERS")]
    pub(crate) brokers: String,
    /// The alert topic.
    #[arg(long, default_value = "vaewatch.alerts")]
    pub(crate) topic: String,
    /// Print the topic's history first.
    #[arg(long)]
    pub(crate) from_beginning: bool,
    /// Print the events as JSON lines.
    #[arg(long)]
    pub(crate) json: bool,
    /// librdkafka consumer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    pub(crate) properties: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The TOML config file (see docs/config.md).
    #[arg(long, env = "VAEWATCH_CONFIG")]
    pub(crate) config: PathBuf,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Wall-clock length, e.g. `60s`, `2m`.
    #[arg(long, default_value = "60s", value_parser = parse_duration_ms)]
    pub(crate) duration: i64,
    /// Simulated seconds per second.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) speedup: f64,
    /// Machines in the simulated plant.
    #[arg(long, default_value_t = 6)]
    pub(crate) machines: usize,
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 11)]
    pub(crate) seed: u64,
    /// The model directory (default: the bundled model, built into the binary).
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Where the archive goes (default: a new folder under the system temp dir).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Address of the metrics endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub(crate) metrics_listen: SocketAddr,
}

#[derive(Subcommand)]
pub(crate) enum ModelCommand {
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
    /// Replays two models over the same history and shows what each would have raised beside
    /// the other: alert episodes paired by machine and time, metrics side by side when the
    /// history has labels (OUT/compare.md, OUT/compare.json; each replay in OUT/a and OUT/b).
    Compare(CompareArgs),
    /// Records where the model's normal windows lie in its latent space, so `vaewatch sample`
    /// draws windows that spread like the data (`train` records it; this gives it to models
    /// trained before it existed). The weights are unchanged; the model gets a new id.
    FitLatent(crate::generative::FitLatentArgs),
}

#[derive(Args)]
pub(crate) struct CompareArgs {
    /// The first model directory (for instance the one running now).
    #[arg(long)]
    pub(crate) a: PathBuf,
    /// The second model directory (for instance a candidate).
    #[arg(long)]
    pub(crate) b: PathBuf,
    /// History files (Parquet or CSV); one or more.
    #[arg(long = "input", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) alerts: AlertArgs,
    /// Count metrics only from this time on (RFC 3339 or epoch ms), e.g. after both models'
    /// training data.
    #[arg(long, value_parser = parse_time_ms)]
    pub(crate) metrics_from: Option<i64>,
    /// An alert up to this long after a labelled event still detects it, e.g. `5m`.
    #[arg(long, value_parser = parse_duration_ms)]
    pub(crate) event_tolerance: Option<i64>,
    /// Pair an episode of A with one of B on the same machine when they overlap once each is
    /// stretched by this much at its end, e.g. `5m`.
    #[arg(long, value_parser = parse_duration_ms)]
    pub(crate) match_tolerance: Option<i64>,
    /// Skip each replay's report.html.
    #[arg(long)]
    pub(crate) no_report: bool,
    /// Score on the CPU even when a GPU is available.
    #[arg(long)]
    pub(crate) cpu: bool,
    /// A TOML file of `[[maintenance]]` periods and `[[off]]` rules (as for `replay`), for both.
    #[arg(long)]
    pub(crate) operations: Option<PathBuf>,
}

impl CompareArgs {
    pub(crate) fn into_request(self) -> Result<vaewatch::replay::compare::CompareRequest> {
        let operations = read_operations(self.operations.as_deref())?;
        Ok(vaewatch::replay::compare::CompareRequest {
            a: self.a,
            b: self.b,
            inputs: self.inputs,
            out: self.out,
            alerts: self.alerts.config(),
            metrics_from_ms: self.metrics_from,
            event_tolerance_ms: self.event_tolerance.unwrap_or(0),
            match_tolerance_ms: self.match_tolerance.unwrap_or(0),
            report: !self.no_report,
            prefer_gpu: !self.cpu,
            operations,
        })
    }
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// The model directory.
    pub(crate) model_dir: PathBuf,
    /// Windows to score in the timed run.
    #[arg(long, default_value_t = 8192)]
    pub(crate) windows: usize,
    /// Windows per scoring call.
    #[arg(long, default_value_t = 256)]
    pub(crate) batch: usize,
    /// `reconstruction` (one forward pass, comparable with a plain forward elsewhere),
    /// `cross_channel` or `model` (the model's own mode).
    #[arg(long, value_enum, default_value_t = ScoringArg::Model)]
    pub(crate) scoring: ScoringArg,
    /// Score on the CPU even when a GPU is available (CPU threads: RAYON_NUM_THREADS).
    #[arg(long)]
    pub(crate) cpu: bool,
    /// Also report where the time went: normalising, the network (with any copies to and from
    /// the GPU), the errors and scores.
    #[arg(long)]
    pub(crate) profile: bool,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// History files (Parquet or CSV); one or more.
    #[arg(long = "input", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Model directory to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Channels to use, comma-separated, in order (default: every numeric column).
    #[arg(long, value_delimiter = ',')]
    pub(crate) channels: Option<Vec<String>>,
    /// Sample period in ms (default: inferred from the timestamps).
    #[arg(long)]
    pub(crate) sample_period: Option<i64>,
    /// Samples per window, a multiple of 8 (default: chosen from the history length).
    #[arg(long)]
    pub(crate) window: Option<usize>,
    /// Samples between scored windows (default: window / 16).
    #[arg(long)]
    pub(crate) stride: Option<usize>,
    /// Keep rows labelled anomalous (label = 1) in the training data.
    #[arg(long)]
    pub(crate) include_labelled: bool,
    /// Train only on rows at or after this time (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time_ms)]
    pub(crate) from: Option<i64>,
    /// Train only on rows before this time (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time_ms)]
    pub(crate) until: Option<i64>,
    /// Leave out the rows a daemon's archive (its folder, an s3://BUCKET/PREFIX archive read with
    /// the AWS_* environment variables, or one archive file such as a replay's windows.parquet)
    /// shows in an alert episode, in maintenance or switched off: retraining on recent history
    /// without its faults and stops.
    #[arg(long)]
    pub(crate) exclude_archive: Option<PathBuf>,
    /// The alert policy the archive's episodes are found again with: as the daemon's
    /// `[alerts]` k, n and m.
    #[command(flatten)]
    pub(crate) exclude_alerts: AlertArgs,
    /// A TOML file of `[[maintenance]]` periods and `[[off]]` rules (as in the daemon's config)
    /// whose rows are left out.
    #[arg(long)]
    pub(crate) operations: Option<PathBuf>,
    /// Random seed (training is deterministic for a given seed).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Most epochs.
    #[arg(long)]
    pub(crate) max_epochs: Option<usize>,
    /// TOML file of training options (see docs/training.md); flags given here win.
    #[arg(long)]
    pub(crate) options: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// The model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// History files (Parquet or CSV); one or more.
    #[arg(long = "input", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Replace the model's calibrated threshold.
    #[arg(long)]
    pub(crate) threshold: Option<f32>,
    #[command(flatten)]
    pub(crate) alerts: AlertArgs,
    /// Earlier episodes of the same model (any machine) each opened alert lists as the most
    /// similar, by the error profile of the window that opened it; 0 lists none.
    #[arg(long, default_value_t = AlertPolicyConfig::default().similar_episodes)]
    pub(crate) similar_episodes: usize,
    /// Count metrics only from this time on (RFC 3339 or epoch ms), e.g. after the training data.
    #[arg(long, value_parser = parse_time_ms)]
    pub(crate) metrics_from: Option<i64>,
    /// An alert up to this long after a labelled event still detects it, e.g. `5m`
    /// (`--event-tolerance-secs N` still reads N seconds).
    #[arg(long, alias = "event-tolerance-secs", value_parser = parse_duration_ms)]
    pub(crate) event_tolerance: Option<i64>,
    /// Skip report.html.
    #[arg(long)]
    pub(crate) no_report: bool,
    /// Score on the CPU even when a GPU is available.
    #[arg(long)]
    pub(crate) cpu: bool,
    /// Operators' control messages to apply as the replay reaches them (JSON lines of control
    /// v1, e.g. "accept_normal" for a machine from a time on); writes baseline.jsonl.
    #[arg(long)]
    pub(crate) control: Option<PathBuf>,
    /// A TOML file of `[[maintenance]]` periods and `[[off]]` rules, as in the daemon's config:
    /// their windows raise no alert and are marked in the outputs.
    #[arg(long)]
    pub(crate) operations: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct AlertArgs {
    /// Windows above threshold among the last `alert-n` that open an alert.
    #[arg(long, default_value_t = AlertPolicyConfig::default().k)]
    pub(crate) alert_k: usize,
    /// Look-back, in windows, for opening an alert.
    #[arg(long, default_value_t = AlertPolicyConfig::default().n)]
    pub(crate) alert_n: usize,
    /// Windows in a row below threshold that resolve an alert.
    #[arg(long, default_value_t = AlertPolicyConfig::default().m)]
    pub(crate) alert_m: usize,
}

impl AlertArgs {
    pub(crate) fn config(&self) -> AlertPolicyConfig {
        AlertPolicyConfig {
            k: self.alert_k,
            n: self.alert_n,
            m: self.alert_m,
            ..AlertPolicyConfig::default()
        }
    }
}

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// File to write (.parquet or .csv).
    #[arg(long, conflicts_with_all = ["brokers", "topic"])]
    pub(crate) out: Option<PathBuf>,
    /// Kafka bootstrap servers to publish telemetry messages to (with --topic).
    #[arg(long, requires = "topic")]
    pub(crate) brokers: Option<String>,
    /// Topic to publish to.
    #[arg(long, requires = "brokers")]
    pub(crate) topic: Option<String>,
    /// Publish about this many messages per second (default: as fast as possible).
    #[arg(long, conflicts_with = "speedup")]
    pub(crate) rate: Option<f64>,
    /// Publish simulated time this many times faster than real time.
    #[arg(long)]
    pub(crate) speedup: Option<f64>,
    /// librdkafka producer setting KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "property")]
    pub(crate) properties: Vec<String>,
    /// Number of machines.
    #[arg(long, default_value_t = 4)]
    pub(crate) machines: usize,
    /// Length of the run, e.g. `3h`, `90m`, `600s`.
    #[arg(long, default_value = "3h", value_parser = parse_duration_ms)]
    pub(crate) duration: i64,
    /// Time between samples of one machine, e.g. `1s`, `100ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration_ms)]
    pub(crate) period: i64,
    /// Number of faults over the plant.
    #[arg(long)]
    pub(crate) faults: Option<usize>,
    /// Fault-free time at the start of the run, e.g. `24h` (default: 40 % of the run).
    #[arg(long, value_parser = parse_duration_ms)]
    pub(crate) fault_free: Option<i64>,
    /// Random seed; the same seed gives the same plant.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Time of the first samples: `now`, RFC 3339, or ms since the epoch (default
    /// 2026-01-05T00:00:00Z). With `--speedup 1` and `now`, event times follow the clock, so the
    /// daemon's latency metrics read true.
    #[arg(long, value_parser = commands::values::parse_start_ms)]
    pub(crate) start: Option<i64>,
}

/// `--scoring` of `model bench`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScoringArg {
    Reconstruction,
    #[value(name = "cross_channel")]
    CrossChannel,
    Model,
}

impl ScoringArg {
    /// The mode to time; `None` keeps the model's own.
    pub(crate) fn scoring(self) -> Option<Scoring> {
        match self {
            ScoringArg::Reconstruction => Some(Scoring::Reconstruction),
            ScoringArg::CrossChannel => Some(Scoring::CrossChannel),
            ScoringArg::Model => None,
        }
    }
}

impl TrainArgs {
    pub(crate) fn into_request(self) -> Result<commands::train::TrainRequest> {
        let flags = commands::train::TrainFlags {
            seed: self.seed,
            progress: !self.quiet,
            max_epochs: self.max_epochs,
        };
        Ok(commands::train::TrainRequest {
            options: commands::train::train_options(self.options.as_deref(), &flags)?,
            inputs: self.inputs,
            out: self.out,
            channels: self.channels,
            sample_period_ms: self.sample_period,
            window: self.window,
            stride: self.stride,
            include_labelled: self.include_labelled,
            from_ms: self.from,
            until_ms: self.until,
            exclude_archive: self.exclude_archive,
            exclude_alerts: {
                let alerts = self.exclude_alerts.config();
                alerts
                    .validate()
                    .map_err(|e| anyhow::anyhow!("--alert-k/n/m: {e}"))?;
                alerts
            },
            operations: read_operations(self.operations.as_deref())?,
        })
    }
}

/// The `[[maintenance]]` and `[[off]]` tables of `path`, when given.
pub(crate) fn read_operations(
    path: Option<&std::path::Path>,
) -> Result<vaewatch::engine::OperationRules> {
    let Some(path) = path else {
        return Ok(Default::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    vaewatch::engine::OperationRules::from_toml_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl ReplayArgs {
    pub(crate) fn into_request(self) -> Result<vaewatch::replay::ReplayRequest> {
        let operations = read_operations(self.operations.as_deref())?;
        Ok(vaewatch::replay::ReplayRequest {
            model_dir: self.model,
            inputs: self.inputs,
            out: self.out,
            threshold: self.threshold,
            alerts: AlertPolicyConfig {
                similar_episodes: self.similar_episodes,
                ..self.alerts.config()
            },
            metrics_from_ms: self.metrics_from,
            event_tolerance_ms: self.event_tolerance.unwrap_or(0),
            report: !self.no_report,
            prefer_gpu: !self.cpu,
            control: self.control,
            operations,
        })
    }
}

impl SimulateArgs {
    pub(crate) fn into_request(self) -> Result<commands::simulate::SimulateRequest> {
        use commands::simulate::{KafkaSink, SimulateSink};
        let sink = match (self.out, self.brokers, self.topic) {
            (Some(out), _, _) => SimulateSink::File(out),
            (None, Some(brokers), Some(topic)) => SimulateSink::Kafka(KafkaSink {
                brokers,
                topic,
                pacing: match (self.rate, self.speedup) {
                    (Some(rate), _) => Pacing::Rate(rate),
                    (None, Some(speedup)) => Pacing::Speedup(speedup),
                    (None, None) => Pacing::Unpaced,
                },
                properties: commands::values::parse_properties(&self.properties)?,
            }),
            _ => anyhow::bail!("give --out FILE, or --brokers and --topic to publish to Kafka"),
        };
        Ok(commands::simulate::SimulateRequest {
            machines: self.machines,
            duration_ms: self.duration,
            period_ms: self.period,
            faults: self.faults,
            fault_free_ms: self.fault_free,
            seed: self.seed,
            start_ms: self.start,
            sink,
        })
    }
}

impl DemoArgs {
    pub(crate) fn into_options(self) -> vaewatch::demo::DemoOptions {
        vaewatch::demo::DemoOptions {
            duration_ms: self.duration,
            speedup: self.speedup,
            machines: self.machines,
            seed: self.seed,
            model_dir: self.model,
            out_dir: self.out.unwrap_or_else(vaewatch::demo::default_out_dir),
            metrics_listen: self.metrics_listen,
        }
    }
}

impl TailArgs {
    pub(crate) fn into_request(self) -> Result<commands::tail::TailRequest> {
        Ok(commands::tail::TailRequest {
            properties: commands::values::parse_properties(&self.properties)?,
            brokers: self.brokers,
            topic: self.topic,
            from_beginning: self.from_beginning,
            json: self.json,
        })
    }
}

impl BenchArgs {
    pub(crate) fn into_request(self) -> commands::bench::BenchRequest {
        commands::bench::BenchRequest {
            model_dir: self.model_dir,
            windows: self.windows,
            batch: self.batch,
            scoring: self.scoring.scoring(),
            prefer_gpu: !self.cpu,
            profile: self.profile,
            seed: 1,
        }
    }
}

impl BenchConsumerArgs {
    pub(crate) fn into_request(self) -> Result<commands::consume_bench::BenchConsumerRequest> {
        Ok(commands::consume_bench::BenchConsumerRequest {
            properties: commands::values::parse_properties(&self.properties)?,
            brokers: self.brokers,
            topic: self.topic,
            messages: self.messages,
            idle: std::time::Duration::from_millis(self.idle.unsigned_abs()),
        })
    }
}
