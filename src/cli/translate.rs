//! `translate` subcommand.

use transformer_kernels::{Error, Result};

/// Options of `translate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `translate`.
pub fn run(_args: Args) -> Result<()> {
    Err(Error::Unsupported(
        "`translate` is not implemented yet".into(),
    ))
}
