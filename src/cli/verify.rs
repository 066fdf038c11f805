//! `verify` subcommand.

use transformer_kernels::{Error, Result};

/// Options of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `verify`.
pub fn run(_args: Args) -> Result<()> {
    Err(Error::Unsupported("`verify` is not implemented yet".into()))
}
