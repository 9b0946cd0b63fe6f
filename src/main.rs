//! The `vaewatch` binary: parses the command line and calls the library.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use vaewatch::commands;

/// mimalloc keeps freed memory for reuse: with the system allocator every large tensor of a
/// scoring batch was a fresh mapping, and page faults took about a third of the scoring time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "main/args.rs"]
mod args;
#[path = "main/generative.rs"]
mod generative;

use args::{AlertsCommand, Cli, Command, LogFormat, ModelCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own lines; its logs stay quiet unless asked for.
    let log = match (&cli.command, cli.log.as_str()) {
        (Command::Demo(_), "info") => "warn",
        (_, log) => log,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Colours only on a terminal: a log file or journald gets plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let format = cli.log_format;
    match run(cli.command, format) {
        Ok(code) => code,
        Err(e) => {
            report_error(format, &error_chain(e.as_ref()), None);
            ExitCode::FAILURE
        }
    }
}

/// The error that ends the process: a plain line, or with `--log-format json` one more log
/// event, so that a log collector reads every line.
fn report_error(format: LogFormat, chain: &str, hint: Option<&str>) {
    match (format, hint) {
        (LogFormat::Text, None) => eprintln!("error: {chain}"),
        (LogFormat::Text, Some(hint)) => eprintln!("error: {chain}\n({hint})"),
        (LogFormat::Json, hint) => tracing::error!(error = chain, hint, "vaewatch stopped"),
    }
}

/// An error and its causes on one line, each cause once: most messages already carry their
/// source's text, so a cause whose text is already there is not repeated.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

fn run(command: Command, log_format: LogFormat) -> Result<ExitCode> {
    match command {
        Command::Train(args) => {
            let request = args.into_request()?;
            let report = commands::train::train(&request)?;
            println!("{}", commands::train::train_text(&report, &request.out));
        }
        Command::Replay(args) => {
            let request = args.into_request()?;
            let summary = vaewatch::replay::replay(&request)?;
            println!("{}", commands::replay::summary_text(&summary, &request.out));
        }
        Command::Sample(args) => {
            let request = commands::sample::SampleRequest {
                model: args.model,
                n: args.n,
                out: args.out,
                seed: args.seed,
                machine: args.machine,
                condition_on: args.condition_on,
                at_ms: args.at,
            };
            let outcome = commands::sample::sample(&request)?;
            println!("{}", commands::sample::outcome_text(&outcome, &request.out));
        }
        Command::Simulate(args) => {
            let outcome = block_on(commands::simulate::simulate(args.into_request()?))??;
            println!("{}", commands::simulate::outcome_text(&outcome));
        }
        Command::Run(args) => {
            let request = commands::run::RunRequest {
                config: args.config,
            };
            if let Err(e) = block_on(commands::run::run(&request))? {
                let hint = if e.is_retryable() {
                    "a restart resumes from the last commit"
                } else {
                    "fix this before restarting"
                };
                report_error(log_format, &error_chain(&e), Some(hint));
                return Ok(ExitCode::from(e.exit_status()));
            }
        }
        Command::Demo(args) => {
            let options = args.into_options();
            let summary = block_on(vaewatch::demo::run_demo(&options, |line| {
                println!("{line}")
            }))??;
            println!("{}", vaewatch::demo::summary_text(&summary));
        }
        Command::Alerts(AlertsCommand::Tail(args)) => {
            let request = args.into_request()?;
            block_on(commands::tail::tail(
                &request,
                |line| println!("{line}"),
                |other| eprintln!("{other}"),
            ))??;
        }
        Command::Alerts(AlertsCommand::Explain(args)) => {
            let request = commands::explain::ExplainRequest {
                alert_id: args.alert_id,
                model: args.model,
                inputs: args.inputs,
                at_ms: args.at,
                out: args.out,
                archive: args.archive,
                alerts: args.alerts.config(),
            };
            let explanation = commands::explain::explain(&request)?;
            println!(
                "{}",
                commands::explain::explanation_text(&explanation, &request.out)
            );
        }
        Command::Alerts(AlertsCommand::Accept(args)) => {
            let request = args.into_request()?;
            let sent = block_on(commands::control::send(&request))??;
            println!("{sent}");
        }
        Command::Maintenance(args) => {
            let request = args.into_request()?;
            let sent = block_on(commands::control::send(&request))??;
            println!("{sent}");
        }
        Command::Model(ModelCommand::Inspect { model_dir, json }) => {
            print!("{}", commands::inspect::inspect(&model_dir, json)?);
        }
        Command::Model(ModelCommand::Compare(args)) => {
            let request = args.into_request()?;
            let comparison = vaewatch::replay::compare::compare(&request)?;
            println!(
                "{}",
                vaewatch::replay::compare::summary_text(&comparison, &request.out)
            );
        }
        Command::Model(ModelCommand::FitLatent(args)) => {
            let request = args.into_request();
            let outcome = commands::latent::fit_latent(&request)?;
            println!("{}", commands::latent::outcome_text(&outcome, &request));
        }
        Command::Model(ModelCommand::Bench(args)) => {
            let report = commands::bench::bench(&args.into_request())?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::BenchConsumer(args) => {
            let request = args.into_request()?;
            let report = block_on(commands::consume_bench::bench_consumer(&request))??;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `future` to its end on a new multi-threaded tokio runtime: the one runtime of a command.
fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(tokio::runtime::Runtime::new()?.block_on(future))
}
