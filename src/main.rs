//! `transformer-kernels` command-line interface: translate | bench | verify.

fn main() {
    println!("transformer-kernels: not wired yet");
}
