//! `transformer-kernels` command-line interface.
//!
//! - `translate`: translate text with a Marian checkpoint (default: the
//!   embedded demo model), on the CPU or the GPU;
//! - `verify`: run every CUDA kernel against the CPU reference and print a table;
//! - `bench`: time every CUDA kernel and print throughput in roofline units.
//!
//! Exit status: 0 on success, 1 on any error (the message names the file,
//! line or argument at fault), 2 on bad command-line usage.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "transformer-kernels",
    version,
    about = "Encoder-decoder Transformer on hand-written CUDA kernels, with a CPU reference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Translate text (arguments, or one sentence per line on stdin / --input).
    Translate(cli::translate::Args),
    /// Check every CUDA kernel against the CPU reference (needs a GPU).
    Verify(cli::verify::Args),
    /// Benchmark every CUDA kernel (needs a GPU).
    Bench(cli::bench::Args),
}

fn main() -> std::process::ExitCode {
    cli::malloc::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Translate(a) => cli::translate::run(a),
        Command::Verify(a) => cli::verify::run(a),
        Command::Bench(a) => cli::bench::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
