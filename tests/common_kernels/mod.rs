//! Shared helpers of the kernel tests (`tests/cuda_*.rs`): the device (a
//! GPU, else the SIMT emulator), per-dtype instantiation, op-check asserts.
//! The other helper modules follow the same `common_*` naming:
//! `common_model` (model fixtures, the naive model), `common_tokenizer`.
#![allow(dead_code, unused_macros)]

use std::sync::Arc;

use transformer_kernels::cuda::Device;
use transformer_kernels::ops::CheckRow;

/// The device a kernel test runs on: GPU 0 when there is one, else the
/// SIMT emulator (the same test body, executed on the CPU); `None` only
/// after printing one line saying why neither is available (a build without
/// kernels). Under `TK_REQUIRE_GPU=1` (set by scripts/device-check.sh on the
/// GPU machine) anything but a GPU is a failure, so a GPU run can never pass
/// on the emulator or by skipping.
pub fn device_or_skip(test: &str) -> Option<Arc<Device>> {
    let gpu_err = match transformer_kernels::cuda::test_device() {
        Ok(d) => return Some(d),
        Err(why) => why,
    };
    if std::env::var("TK_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("{test}: TK_REQUIRE_GPU=1 but no usable GPU: {gpu_err}");
    }
    match Device::emulator() {
        Ok(d) => Some(d),
        Err(why) => {
            println!("skipped {test}: no GPU ({gpu_err}) and no emulator ({why})");
            None
        }
    }
}

/// One `#[test]` per `name => body::<dtype>;` line: the generic test body
/// `body::<T>(test_name)` instantiated for each storage dtype (use with
/// `#[macro_use] mod common;`).
macro_rules! per_dtype {
    ($($name:ident => $body:ident::<$t:ty>;)*) => {
        $(
            #[test]
            fn $name() {
                $body::<$t>(stringify!($name));
            }
        )*
    };
}

/// Fails the test unless every row of an op check (`transformer_kernels::ops`)
/// passed; the message names the row, the first failing index, got,
/// expected and max |Δ|.
pub fn assert_rows(rows: transformer_kernels::Result<Vec<CheckRow>>, ctx: &str) {
    let rows = rows.unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(!rows.is_empty(), "{ctx}: the check compared nothing");
    for r in &rows {
        assert!(r.passed, "{ctx}: {}", r.describe());
    }
}
