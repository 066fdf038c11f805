//! The English→German demo model (models/demo-en-de), embedded in the CLI
//! binary by build.rs so that `translate` needs no `--model` wherever the
//! binary is copied. The checkpoint loader reads directories, so the files
//! are written once to a cache directory and loaded from there.

use std::path::{Path, PathBuf};

use transformer_kernels::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/demo_model.rs"));

/// The demo model in the source tree this binary was built from.
const SOURCE_TREE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo-en-de");

/// A directory holding the demo model: the source tree's copy when it is
/// still there, else the embedded files written to
/// `$XDG_CACHE_HOME` (or `~/.cache`) `/transformer-kernels/demo-en-de-<size>-<checksum>`.
///
/// # Errors
/// [`Error::Io`] when neither exists and the cache directory cannot be written.
pub fn demo_model_dir() -> Result<PathBuf> {
    let src = Path::new(SOURCE_TREE_DIR);
    if src.join("model.safetensors").is_file() {
        return Ok(src.to_path_buf());
    }
    if DEMO_MODEL_FILES.is_empty() {
        return Err(Error::io(
            src,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the demo model is not in the source tree and was not embedded in this binary; pass --model DIR",
            ),
        ));
    }
    let dir = cache_root().join(format!("demo-en-de-{}", fingerprint()));
    if DEMO_MODEL_FILES.iter().all(|(name, bytes)| {
        std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    }) {
        return Ok(dir);
    }
    // Write into a temporary sibling and rename, so that a concurrent run
    // never sees a half-written model.
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for (name, bytes) in DEMO_MODEL_FILES {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process won the race: use its copy.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(Error::io(&dir, e)),
    }
}

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("transformer-kernels")
}

/// Total size and an FNV-1a checksum of the embedded files: a new model
/// gets a new cache directory.
fn fingerprint() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut size = 0usize;
    for (name, bytes) in DEMO_MODEL_FILES {
        for b in name.bytes().chain(bytes.iter().copied()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        size += bytes.len();
    }
    format!("{size}-{hash:016x}")
}
