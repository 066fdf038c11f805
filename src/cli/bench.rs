//! `bench` subcommand.

use transformer_kernels::{Error, Result};

/// Options of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `bench`.
pub fn run(_args: Args) -> Result<()> {
    Err(Error::Unsupported("`bench` is not implemented yet".into()))
}
