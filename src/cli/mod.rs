//! One file per subcommand: its clap `Args` and its `run`.

pub mod bench;
pub mod bench_model;
pub mod demo_model;
pub mod kernel_device;
pub mod lines;
pub mod malloc;
pub mod translate;
pub mod verify;

/// An on / off flag value (`--cuda-graph on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl Switch {
    /// True for [`Switch::On`].
    pub fn on(self) -> bool {
        self == Switch::On
    }
}

/// The fast CPU backend with `threads` worker threads (0: every core), and
/// a note on stderr when more are asked for than the machine has cores
/// (it works, but slower than as many as the cores).
///
/// Errors: as [`transformer_kernels::fast_cpu::FastCpu::new`].
pub fn fast_cpu(
    threads: usize,
) -> transformer_kernels::Result<transformer_kernels::fast_cpu::FastCpu> {
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
    if threads > cores {
        eprintln!(
            "note: --threads {threads} is more than the {cores} cores this machine reports; expect it to be slower than --threads {cores}"
        );
    }
    transformer_kernels::fast_cpu::FastCpu::new(threads)
}
