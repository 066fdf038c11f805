//! The crate's one error type.
//!
//! Every fallible public function returns [`Result<T>`]. Variants are
//! structured (they carry the op, the file, the expected and actual shapes)
//! so that callers can match on them and so that the `Display` text names the
//! problem without a backtrace. Library code never panics or exits on user
//! input; it returns one of these.

use std::path::PathBuf;

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- shapes, dtypes and arguments -------------------------------------
    /// A tensor handed to `op` does not have the shape the op needs.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape {
        /// The operation that checked the shape (e.g. `"layer_norm"`).
        op: &'static str,
        /// What the op needed, written as a shape (e.g. `"[tokens, 512]"`).
        expected: String,
        /// What it was given.
        got: String,
    },
    /// A tensor has a storage dtype the op does not accept.
    #[error("{op}: dtype mismatch: expected {expected}, got {got}")]
    DType {
        /// The operation that checked the dtype.
        op: &'static str,
        /// The dtype(s) the op accepts.
        expected: String,
        /// The dtype it was given.
        got: String,
    },
    /// An argument is out of its valid range (a token id past the vocabulary,
    /// a size that does not fit the kernel's index type, a zero beam width ...).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument {
        /// The operation or function that rejected the argument.
        op: &'static str,
        /// What was wrong, with the offending value.
        msg: String,
    },

    // ----- files and checkpoints --------------------------------------------
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that could not be read or written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config.json, vocab.json, generation_config.json) is malformed.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint file is unusable: a corrupt or truncated safetensors
    /// file, tensors missing, unexpected or mis-shaped against config.json,
    /// or a config value out of range.
    #[error("{}: {msg}", path.display())]
    Checkpoint {
        /// The file at fault (model.safetensors, config.json ...).
        path: PathBuf,
        /// What is wrong with it; for tensor mismatches, every offending
        /// tensor by name and shape.
        msg: String,
    },
    /// A tokenizer file (source.spm, target.spm, vocab.json) is missing or
    /// corrupt.
    #[error("{}: {msg}", path.display())]
    Tokenizer {
        /// The tokenizer file at fault.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An input line is not valid UTF-8.
    #[error("input line {line}: not valid UTF-8")]
    InvalidUtf8 {
        /// 1-based line number in the input.
        line: usize,
    },

    // ----- CUDA --------------------------------------------------------------
    /// The CUDA kernels were not compiled into this build (no nvcc was found
    /// when the crate was built). Run `scripts/setup-toolchain.sh` and rebuild.
    #[error(
        "the CUDA kernels were not built into this binary (nvcc was not found at build time); \
         run scripts/setup-toolchain.sh and rebuild, or set NVCC / CUDA_HOME"
    )]
    KernelsNotBuilt,
    /// No usable CUDA driver or device: libcuda is absent, no device is
    /// visible, or the requested ordinal does not exist.
    #[error("no CUDA device available: {0}")]
    NoCuda(String),
    /// A CUDA driver call failed (launch failure, out of memory, ...).
    #[error("CUDA driver error in {op}: {source}")]
    Cuda {
        /// What the crate was doing when the driver call failed.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: cudarc::driver::DriverError,
    },
    /// A device allocation failed for lack of memory (on a GPU, or host
    /// memory for the emulator). `hint` says what the caller can change
    /// (e.g. `; try a smaller --batch-size`), or is empty.
    #[error("out of memory on {device}: {bytes} bytes requested{hint}")]
    OutOfMemory {
        /// The device, as its runtime names it.
        device: String,
        /// Size of the allocation that failed.
        bytes: usize,
        /// What to change, starting with "; ", or empty.
        hint: String,
    },
    /// The SIMT emulator stopped a kernel: a barrier some threads never
    /// reach, a warp collective whose member mask is wrong, a write past
    /// the end of an allocation, an invalid launch. The message names the
    /// kernel, the block and the threads.
    #[error("emulator: {0}")]
    KernelFault(String),
    /// The requested backend does not implement this yet.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::Shape {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Checkpoint`].
    pub fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Tokenizer`].
    pub fn tokenizer(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Tokenizer {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// Formats a shape as `[a, b, c]` for error messages.
pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}
