#!/usr/bin/env bash
# The project's test command (README; .ci/run calls it). Needs no GPU.
#   1. installs the pinned CUDA compiler + libclang (idempotent; seconds when present);
#   2. cargo fmt --check, cargo clippy -D warnings;
#   3. cargo test --release with TK_REQUIRE_KERNELS=1: every kernel must compile
#      for sm_80 and sm_90a, and tests/kernel_static_checks.rs fails on register
#      spills (kernels/spill-allowlist.txt is the only way out) or a fatbin
#      without sm_90a SASS. GPU tests print why they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

TK_TOOLCHAIN_DIR="$(bash scripts/setup-toolchain.sh | tail -n 1)"
export TK_TOOLCHAIN_DIR
export TK_REQUIRE_KERNELS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
# --show-output: the one-line "skipped ...: why" of each GPU test is visible.
cargo test --release -- --show-output
# The fast CPU backend picks AVX-512, AVX2 or portable code at run time; the
# run above used this machine's best. Its op tests and the fixtures once
# more on each lower instruction set this CPU can run (TK_CPU_ISA caps the
# choice), so that no path goes untested (seconds each).
for isa in avx2 portable; do
  echo "== cargo test, fast CPU backend capped at $isa"
  TK_CPU_ISA=$isa cargo test --release --test fast_cpu_ops --test model_parity
done
