//! One file per subcommand: its clap `Args` and its `run`.

pub mod bench;
pub mod translate;
pub mod verify;
