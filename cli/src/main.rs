//! `pinpipe`: the command-line face of the pipeline.

use std::io::{self, BufWriter};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pinpipe::Table;

mod clean;
mod demo;
mod emulate;
mod poll;
mod query;
mod redrive;

#[derive(Parser)]
#[command(name = "pinpipe", version, about = "pinpipe: a serverless pin/geo/user event pipeline into Delta Lake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline locally: emulated posts through the producer into embedded
    /// streams, drained by the consumers into Delta tables on disk, then a summary.
    Demo(demo::DemoArgs),
    /// Send emulated posts to a running producer (`--api URL`), or write them as Kafka Connect
    /// files for the batch path (`--kafka-files DIR`).
    Emulate(emulate::EmulateArgs),
    /// Clean raw records (JSON lines on stdin) exactly as the Lambdas do: clean records as JSON
    /// lines on stdout, rejected lines as `{"line": N, "reason": "..."}` on stderr.
    Clean {
        /// Which table the records belong to.
        #[arg(long, value_parser = parse_table)]
        table: Table,
    },
    /// Answer the analytics questions of docs/analytics.md (or `--sql`) with SQL over the lake's Delta
    /// tables: aligned tables, CSV or JSON, and SVG bar charts with `--chart DIR`.
    Query(query::QueryArgs),
    /// Do locally what Lambda's Kinesis event source mapping does: read a stream shard by shard,
    /// invoke a function (`cargo lambda watch`) with Lambda's event batches, follow its partial
    /// batch responses, and keep each shard's position in a file.
    Poll(poll::PollArgs),
    /// Re-clean quarantined records with today's cleaning rules: the ones that pass land in
    /// their table exactly once, the others stay with today's reason (`--dry-run`: only say).
    Redrive(redrive::RedriveArgs),
}

fn parse_table(s: &str) -> Result<Table, String> {
    s.parse().map_err(|e: pinpipe::table::UnknownTable| e.to_string())
}

/// Runs `work`, then waits for the checkpoints its appends left writing in the background.
async fn settled<T>(work: impl Future<Output = T>) -> T {
    let result = work.await;
    pinpipe::lake::settle_background_checkpoints().await;
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(settled(demo::run(&args))) {
                Ok(report) => {
                    report.print(&args.lake);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pinpipe demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Emulate(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(emulate::run(&args)) {
                Ok(report) => {
                    report.print();
                    if report.records_failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
                }
                Err(e) => {
                    eprintln!("pinpipe emulate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Query(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(query::run(&args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pinpipe query: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Poll(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(poll::run(&args)) {
                Ok(report) => {
                    println!(
                        "pinpipe poll: {}: {} records done in {} invocations of {} ({} retried); positions in {}",
                        args.stream,
                        report.records,
                        report.invocations,
                        args.function,
                        report.retries,
                        args.state_file().display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pinpipe poll: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Redrive(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match runtime.block_on(settled(redrive::run(&args))) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pinpipe redrive: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Clean { table } => {
            let stdin = io::stdin().lock();
            let mut stdout = BufWriter::new(io::stdout().lock());
            let mut stderr = BufWriter::new(io::stderr().lock());
            match clean::clean_lines(table, stdin, &mut stdout, &mut stderr) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pinpipe clean: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
