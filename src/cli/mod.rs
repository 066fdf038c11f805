//! One file per subcommand: its clap `Args` and its `run`.

pub mod bench;
pub mod bench_model;
pub mod demo_model;
pub mod kernel_device;
pub mod lines;
pub mod malloc;
pub mod translate;
pub mod verify;
