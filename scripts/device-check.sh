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
#       4. `transformer-kernels bench --model models/demo-en-de` (end to end, bf16), the same
#          at batch 32 with `--cuda-graph on` (decode steps replayed as CUDA graphs), and
#          Hugging Face `MarianMTModel.generate` on the same ids (scripts/hf_generate_bench.py),
#          with the speed-up ours / HF;
#       5. PyTorch's layer_norm / embedding / log_softmax+topk / activations / .to(dtype)
#          cuBLAS GEMMs (x @ W.T alone; F.linear + activation + residual; the 8192^3
#          bf16 peak) and scaled_dot_product_attention on the same shapes, timed the same way (scripts/torch_compare.py);
#       6. a short table last: test and verify status, ours vs PyTorch at the largest shapes.
#     Logs and CSVs go to $OUT (if set, e.g. by the device runner) or device-pack/out;
#     $OUT/status.txt gets one line per step as soon as the step ends (read it if the
#     run is cut short). Exit status: non-zero when a test, verify, bench or our e2e run
#     failed or timed out (PyTorch and Hugging Face are informative).
#     The criterion benches are packed too (bin names convert, layer_norm, embedding, logits,
#     bias_activation, linear, attention, gather_rows under the unpacked benches/); run one
#     by hand with `<bin> --bench`.
#
# Device budget (why the limits below are what they are): one device command may run
# at most 600 s, and a session's whole device time (machine start, every command, idle
# time) is 15 minutes. `run` is therefore capped at RUN_BUDGET_S (default 465 s, under
# 8 minutes) so that one call fits a 600 s command with the machine's start-up aside,
# and a failed run leaves time for one shorter rerun (STEPS="verify" etc.). Per-step
# timeouts, sized by what each step does, sum to the budget:
#     unpack 20 s; GPU tests 11 binaries x 20 s = 220 s (each runs in seconds when the
#     kernels are right; a hang is what the timeout catches; the CPU references of
#     cuda_linear, cuda_attention and cuda_model are their largest part); verify 40 s;
#     bench 60 s (~95 rows x 3 dtypes x 25 launches, plus a copy baseline per size);
#     e2e 40 s (the demo model on 512 sentences, bf16, greedy and beam 4 at batch 32 and
#     128, and the decode step beside its floor) + 15 s the same with --cuda-graph on at
#     batch 32 + Hugging Face generate on the same ids 30 s; PyTorch 30 s; summary
#     reserve 10 s: 465 s in all.
# Every step's timeout is also cut to what is left of the budget, and a step that no
# longer fits is recorded as skipped, so the summary table is always printed, also
# after a timeout, and also on SIGTERM/SIGINT (a trap; bash runs it once the
# current step's command has returned, which its own timeout bounds).
#   STEPS="tests verify bench e2e torch" (the default) picks the steps to run.
#
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
    # The executable's path from cargo itself (honours CARGO_TARGET_DIR and
    # .cargo/config build.target-dir), as for the tests and benches below.
    local cli
    cli=$(cargo build --release --bin transformer-kernels --message-format=json |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.kind == ["bin"] and .target.name == "transformer-kernels") | .executable' |
        tail -n 1)
    [ -n "$cli" ] && [ -f "$cli" ] || { echo "cargo reported no transformer-kernels executable" >&2; exit 1; }
    cp "$cli" "$stage/bin/"
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
    cp scripts/device-check.sh scripts/torch_compare.py scripts/hf_generate_bench.py "$PACK/"
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

# Seconds a step may take: its own limit, cut to what is left of the budget
# (less the summary's reserve); 0 when nothing is left.
step_limit() {
    local want=$1 left=$((DEADLINE - SECONDS - SUMMARY_RESERVE_S))
    [ "$left" -lt 0 ] && left=0
    [ "$want" -lt "$left" ] && echo "$want" || echo "$left"
}

# status LINE: one line to the status file (written as the run goes) and stdout.
status() { echo "$*" | tee -a "$STATUS"; }

# describe_rc RC LIMIT: "rc=N", or the timeout spelled out.
describe_rc() {
    case "$1" in
        124 | 137) echo "rc=$1 TIMEOUT after $2 s" ;;
        *) echo "rc=$1" ;;
    esac
}

SUMMARY_DONE=0
summary() {
    [ "$SUMMARY_DONE" = 0 ] || return 0
    SUMMARY_DONE=1
    echo "== summary ($((SECONDS - T0)) s of the ${RUN_BUDGET_S} s budget)"
    cat "$STATUS"
    timeout 10 python3 "$PACK/torch_compare.py" --summary "$OUTDIR/bench.csv" "$OUTDIR/torch.csv" || true
    if [ "$FAILED" != 0 ]; then
        echo "device check: FAILED (see $OUTDIR)"
    else
        echo "device check: tests, verify, bench and e2e passed (those that ran)"
    fi
}

run() {
    [ -f "$PACK/pack.tar.xz" ] || { echo "no $PACK/pack.tar.xz: run 'bash scripts/device-check.sh pack' on the build machine first" >&2; exit 2; }
    RUN_BUDGET_S=${RUN_BUDGET_S:-465}
    SUMMARY_RESERVE_S=10
    T0=$SECONDS
    DEADLINE=$((T0 + RUN_BUDGET_S))
    OUTDIR="${OUT:-$PACK/out}"
    STATUS="$OUTDIR/status.txt"
    FAILED=0
    local steps=" ${STEPS:-tests verify bench e2e torch} "
    mkdir -p "$OUTDIR"
    : >"$STATUS"
    # The summary is printed however the run ends (timeout of the whole
    # command included: the runner's SIGTERM reaches this shell).
    trap 'FAILED=1; status "interrupted after $((SECONDS - T0)) s"; summary; exit 1' INT TERM
    status "pack commit: $(head -n 1 "$PACK/COMMIT" 2>/dev/null || echo unknown); budget ${RUN_BUDGET_S} s; steps:${steps% }"

    # Unpack outside the tree (python's tarfile: no dependency on an xz binary).
    local bins="${TMPDIR:-/tmp}/tk-device-pack" rc=0 lim
    rm -rf "$bins"
    mkdir -p "$bins"
    lim=$(step_limit 20)
    timeout -k 5 "$lim" python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PACK/pack.tar.xz" "$bins" || rc=$?
    if [ "$rc" != 0 ]; then
        FAILED=1
        status "unpack: $(describe_rc "$rc" "$lim")"
        summary
        return 1
    fi
    echo "== device"
    timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    export TK_REQUIRE_GPU=1

    if [[ "$steps" == *" tests "* ]]; then
        echo "== GPU tests (TK_REQUIRE_GPU=1)"
        for t in "$bins"/tests/*; do
            local name summary_line
            name=$(basename "$t")
            lim=$(step_limit 20)
            if [ "$lim" -lt 5 ]; then
                FAILED=1
                status "test $name: SKIPPED (budget spent)"
                continue
            fi
            rc=0
            timeout -k 5 "$lim" "$t" >"$OUTDIR/test-$name.log" 2>&1 || rc=$?
            summary_line=$(grep -E '^test result:' "$OUTDIR/test-$name.log" | tail -n 1 || true)
            status "test $name: $(describe_rc "$rc" "$lim") ${summary_line:-no summary (see $OUTDIR/test-$name.log)}"
            if [ "$rc" != 0 ]; then
                FAILED=1
                grep -E 'panicked|FAILED|failed' "$OUTDIR/test-$name.log" | head -n 8 || true
            fi
        done
    fi

    if [[ "$steps" == *" verify "* ]]; then
        echo "== verify"
        lim=$(step_limit 40)
        if [ "$lim" -lt 5 ]; then
            FAILED=1
            status "verify: SKIPPED (budget spent)"
        else
            # With pipefail, a pipeline's status is the command's unless tee fails.
            rc=0
            timeout -k 5 "$lim" "$bins/bin/transformer-kernels" verify 2>&1 | tee "$OUTDIR/verify.txt" || rc=$?
            status "verify: $(describe_rc "$rc" "$lim") $(grep -cE ' FAIL ' "$OUTDIR/verify.txt" || true) failing rows"
            [ "$rc" = 0 ] || FAILED=1
        fi
    fi

    if [[ "$steps" == *" bench "* ]]; then
        echo "== bench"
        lim=$(step_limit 60)
        if [ "$lim" -lt 5 ]; then
            FAILED=1
            status "bench: SKIPPED (budget spent)"
        else
            rc=0
            timeout -k 5 "$lim" "$bins/bin/transformer-kernels" bench --iters 20 --csv "$OUTDIR/bench.csv" 2>&1 | tee "$OUTDIR/bench.txt" || rc=$?
            status "bench: $(describe_rc "$rc" "$lim")"
            [ "$rc" = 0 ] || FAILED=1
        fi
    fi

    if [[ "$steps" == *" e2e "* ]]; then
        echo "== end to end: the demo model, ours vs Hugging Face generate (bf16, same ids)"
        # The first 512 lines of Multi30k test_2016_flickr (English), from
        # the tokenizer fixture that the tree carries.
        python3 -c 'import gzip, json, sys
c = json.load(gzip.open(sys.argv[1]))["encode_source"]
t = [x["text"] for x in c if x["kind"] == "test_2016_flickr"][:512]
open(sys.argv[2], "w").write("\n".join(t) + "\n")' tests/fixtures/tokenizer/en-de/cases.json.gz "$OUTDIR/e2e.en" || true
        lim=$(step_limit 40)
        if [ "$lim" -lt 5 ]; then
            FAILED=1
            status "e2e: SKIPPED (budget spent)"
        else
            rc=0
            timeout -k 5 "$lim" "$bins/bin/transformer-kernels" bench --model models/demo-en-de --input "$OUTDIR/e2e.en" \
                --dtype bf16 --batch-size 32,128 --beam 1,4 --csv "$OUTDIR/e2e.csv" --ids-out "$OUTDIR/e2e.ids" 2>&1 |
                tee "$OUTDIR/e2e.txt" || rc=$?
            status "e2e: $(describe_rc "$rc" "$lim") $(grep -E '^decode step' "$OUTDIR/e2e.txt" || true)"
            [ "$rc" = 0 ] || FAILED=1
        fi
        # Replayed decode steps (CUDA graphs): never run on a GPU before
        # this check, so a failure here fails the check.
        lim=$(step_limit 15)
        if [ "$lim" -lt 5 ]; then
            FAILED=1
            status "e2e graph: SKIPPED (budget spent)"
        else
            rc=0
            timeout -k 5 "$lim" "$bins/bin/transformer-kernels" bench --model models/demo-en-de --input "$OUTDIR/e2e.en" \
                --dtype bf16 --batch-size 32 --beam 1,4 --cuda-graph on --csv "$OUTDIR/e2e_graph.csv" 2>&1 |
                tee "$OUTDIR/e2e_graph.txt" || rc=$?
            status "e2e graph: $(describe_rc "$rc" "$lim") $(grep -E '^(decode step|cuda graph)' "$OUTDIR/e2e_graph.txt" | tr '\n' ' ' || true)"
            [ "$rc" = 0 ] || FAILED=1
        fi
        lim=$(step_limit 30)
        if [ "$lim" -lt 5 ] || [ ! -f "$OUTDIR/e2e.ids" ]; then
            status "hf e2e: SKIPPED (budget spent or no ids; informative only)"
        else
            rc=0
            timeout -k 5 "$lim" python3 "$PACK/hf_generate_bench.py" --model models/demo-en-de --ids "$OUTDIR/e2e.ids" \
                --dtype bf16 --batch-size 32,128 --beam 1,4 --csv "$OUTDIR/hf_e2e.csv" --compare "$OUTDIR/e2e.csv" 2>&1 |
                tee "$OUTDIR/hf_e2e.txt" || rc=$?
            status "hf e2e: $(describe_rc "$rc" "$lim") (informative only)"
        fi
    fi

    if [[ "$steps" == *" torch "* ]]; then
        echo "== PyTorch on the same shapes"
        lim=$(step_limit 30)
        if [ "$lim" -lt 5 ]; then
            status "torch: SKIPPED (budget spent; informative only)"
        else
            rc=0
            timeout -k 5 "$lim" python3 "$PACK/torch_compare.py" --iters 30 --csv "$OUTDIR/torch.csv" 2>&1 | tee "$OUTDIR/torch.txt" || rc=$?
            status "torch: $(describe_rc "$rc" "$lim") (informative only)"
        fi
    fi

    trap - INT TERM
    summary
    [ "$FAILED" = 0 ]
}

case "${1:-}" in
    pack) pack ;;
    run) run ;;
    *)
        echo "usage: bash scripts/device-check.sh pack|run" >&2
        exit 2
        ;;
esac
