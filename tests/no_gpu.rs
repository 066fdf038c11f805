//! The CUDA layer on a machine without a GPU (or without kernels): clear
//! errors, never a panic. On a GPU machine the same calls must succeed.

use transformer_kernels::cuda::{self, Device};
use transformer_kernels::Error;

#[test]
fn opening_a_device_never_panics_and_names_the_problem() {
    let r = std::panic::catch_unwind(|| Device::open(0));
    let r = r.expect("Device::open must not panic");
    match r {
        Ok(dev) => println!("GPU present: {dev:?}"),
        Err(Error::KernelsNotBuilt) => {
            let built = cuda::kernels::FATBINS.is_empty();
            assert!(built, "KernelsNotBuilt although kernels are embedded")
        }
        Err(Error::NoCuda(why)) => {
            assert!(!why.is_empty());
            println!("no GPU here (expected on CI): {why}");
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn device_count_is_an_error_or_a_count_never_a_panic() {
    let r = std::panic::catch_unwind(cuda::device_count).expect("device_count must not panic");
    match r {
        Ok(n) => println!("driver sees {n} device(s)"),
        Err(e) => {
            assert!(matches!(e, Error::NoCuda(_)), "unexpected error kind: {e}");
            println!("no driver: {e}");
        }
    }
}

#[test]
fn out_of_range_ordinal_is_an_error() {
    let r = std::panic::catch_unwind(|| Device::open(1_000_000)).expect("must not panic");
    assert!(r.is_err(), "device 1000000 cannot exist");
}
