#!/usr/bin/env bash
# The one prepared check for a GPU machine that has no Rust toolchain
# (e.g. an H200 with nvcc, PyTorch and ncu). Two parts:
#
#   bash scripts/device-check.sh pack   # on the build machine (Rust + nvcc, no GPU needed)
#       builds, in release, every GPU test binary (tests/cuda_*.rs, tests/no_gpu.rs),
#       the criterion bench binaries and the CLI; strips them and packs them into
#       the git-ignored device-pack/pack.tar.xz, beside this script and
#       scripts/torch_compare.py (must stay under 64 MiB: it travels to the GPU
#       machine with the tree; the binaries embed the same fatbins, which xz
#       shares across files: ~65 MiB of binaries become ~3 MiB).
#
#   bash scripts/device-check.sh run    # on the GPU machine, from the repository root
#       1. every packed GPU test with TK_REQUIRE_GPU=1 (a missing GPU fails, never skips);
#       2. `transformer-kernels verify` (every kernel vs the CPU reference, all dtypes);
#       3. `transformer-kernels bench` (time, GB/s, % of a device-to-device copy);
#       4. PyTorch's layer_norm / embedding / log_softmax+topk / activations on the
#          same shapes, timed the same way (scripts/torch_compare.py);
#       5. a short table last: test and verify status, ours vs PyTorch at the largest shapes.
#     Logs and CSVs go to $OUT (if set, e.g. by the device runner) or device-pack/out.
#     Each step has a timeout; the whole run is sized to finish in under 5 minutes.
#     Exit status: non-zero when a test, verify or bench failed (PyTorch is informative).
#     The criterion benches are packed too (bin names layer_norm, embedding, logits,
#     bias_activation under the unpacked benches/); run one by hand with `<bin> --bench`.
#
# Record figures from a run only in BENCHMARKS.md, with the date and the device.
set -euo pipefail
cd "$(dirname "$0")/.."

PACK=device-pack
MAX_PACK_MB=64

pack() {
    TK_TOOLCHAIN_DIR="$(bash scripts/setup-toolchain.sh | tail -n 1)"
    export TK_TOOLCHAIN_DIR
    export TK_REQUIRE_KERNELS=1
    local test_args=() bench_args=()
    for f in tests/cuda_*.rs tests/no_gpu.rs; do
        test_args+=(--test "$(basename "$f" .rs)")
    done
    for f in benches/*.rs; do
        bench_args+=(--bench "$(basename "$f" .rs)")
    done
    rm -rf "$PACK"
    local stage="$PACK/stage"
    mkdir -p "$stage/tests" "$stage/benches" "$stage/bin"
    echo "== cargo build --release (CLI)"
    cargo build --release --bin transformer-kernels
    cp target/release/transformer-kernels "$stage/bin/"
    echo "== cargo test --release --no-run ${test_args[*]}"
    cargo test --release --no-run --message-format=json "${test_args[@]}" |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.kind == ["test"]) | "\(.target.name) \(.executable)"' |
        while read -r name exe; do cp "$exe" "$stage/tests/$name"; done
    echo "== cargo bench --no-run ${bench_args[*]}"
    cargo bench --no-run --message-format=json "${bench_args[@]}" |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.kind == ["bench"]) | "\(.target.name) \(.executable)"' |
        while read -r name exe; do cp "$exe" "$stage/benches/$name"; done
    strip "$stage"/bin/* "$stage"/tests/* "$stage"/benches/*
    ls -l "$stage"/bin "$stage"/tests "$stage"/benches
    tar -C "$stage" -cJf "$PACK/pack.tar.xz" bin tests benches
    rm -rf "$stage"
    cp scripts/device-check.sh scripts/torch_compare.py "$PACK/"
    git rev-parse HEAD >"$PACK/COMMIT" 2>/dev/null || echo unknown >"$PACK/COMMIT"
    if ! git diff --quiet HEAD 2>/dev/null; then echo "(with uncommitted changes)" >>"$PACK/COMMIT"; fi
    local mb
    mb=$(du -sm "$PACK" | cut -f1)
    ls -l "$PACK"
    echo "device-pack: ${mb} MiB (limit ${MAX_PACK_MB} MiB), commit $(cat "$PACK/COMMIT")"
    if [ "$mb" -ge "$MAX_PACK_MB" ]; then
        echo "device-pack is too large to travel" >&2
        exit 1
    fi
}

run() {
    [ -f "$PACK/pack.tar.xz" ] || { echo "no $PACK/pack.tar.xz: run 'bash scripts/device-check.sh pack' on the build machine first" >&2; exit 2; }
    local out="${OUT:-$PACK/out}"
    mkdir -p "$out"
    # Unpack outside the tree (python's tarfile: no dependency on an xz binary).
    local bins="${TMPDIR:-/tmp}/tk-device-pack"
    rm -rf "$bins"
    mkdir -p "$bins"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PACK/pack.tar.xz" "$bins"
    local status="$out/status.txt"
    : >"$status"
    local failed=0
    local t0=$SECONDS
    echo "== device"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    echo "pack commit: $(cat "$PACK/COMMIT" 2>/dev/null || echo unknown)"
    export TK_REQUIRE_GPU=1

    echo "== GPU tests (TK_REQUIRE_GPU=1)"
    for t in "$bins"/tests/*; do
        local name rc=0
        name=$(basename "$t")
        timeout 150 "$t" >"$out/test-$name.log" 2>&1 || rc=$?
        local summary
        summary=$(grep -E '^test result:' "$out/test-$name.log" | tail -n 1 || true)
        echo "test $name: rc=$rc ${summary:-no summary (see $out/test-$name.log)}" | tee -a "$status"
        if [ "$rc" != 0 ]; then
            failed=1
            grep -E 'panicked|FAILED|failed' "$out/test-$name.log" | head -n 8 || true
        fi
    done

    echo "== verify"
    # With pipefail, a pipeline's status is the command's unless tee fails.
    local rc=0
    timeout 120 "$bins/bin/transformer-kernels" verify 2>&1 | tee "$out/verify.txt" || rc=$?
    echo "verify: rc=$rc $(grep -cE ' FAIL ' "$out/verify.txt" || true) failing rows" | tee -a "$status"
    [ "$rc" = 0 ] || failed=1

    echo "== bench"
    rc=0
    timeout 120 "$bins/bin/transformer-kernels" bench --iters 30 --csv "$out/bench.csv" 2>&1 | tee "$out/bench.txt" || rc=$?
    echo "bench: rc=$rc" | tee -a "$status"
    [ "$rc" = 0 ] || failed=1

    echo "== PyTorch on the same shapes"
    rc=0
    timeout 90 python3 "$PACK/torch_compare.py" --iters 30 --csv "$out/torch.csv" 2>&1 | tee "$out/torch.txt" || rc=$?
    echo "torch: rc=$rc" | tee -a "$status"

    echo "== summary ($((SECONDS - t0)) s)"
    cat "$status"
    python3 "$PACK/torch_compare.py" --summary "$out/bench.csv" "$out/torch.csv" || true
    if [ "$failed" != 0 ]; then
        echo "device check: FAILED (see $out)"
        return 1
    fi
    echo "device check: tests, verify and bench passed"
}

case "${1:-}" in
    pack) pack ;;
    run) run ;;
    *)
        echo "usage: bash scripts/device-check.sh pack|run" >&2
        exit 2
        ;;
esac
