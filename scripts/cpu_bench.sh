#!/usr/bin/env bash
# CPU throughput of the fast CPU backend against CTranslate2 fp32, same run,
# same sentences (Multi30k test_2016_flickr), same batches and beams, model
# load excluded on both sides:
#   1. ours: `transformer-kernels bench --model DIR --backend cpu` at each
#      thread count (its --ids-out gives the exact source ids it ran);
#   2. CTranslate2: the checkpoint converted once with
#      ct2-transformers-converter (cached in ~/.cache/tk-ct2/<name>), then
#      scripts/ct2_bench.py on those ids at each thread count;
#   3. the table: sentences/s, ours' best and CTranslate2's best thread
#      count, and the ratio.
# Each setting runs --repeat times (default 3) on both sides and the
# fastest run counts: run-to-run noise on the 2-core VM is about 10%.
# Never part of CI. Needs a Python with ctranslate2 + transformers + torch:
#   python3 -m venv ~/.cache/tk-py
#   ~/.cache/tk-py/bin/pip install ctranslate2 transformers torch sentencepiece
#
# Usage (from the repository root):
#   scripts/cpu_bench.sh [--model models/demo-en-de] [--src en] [--threads 1,2]
#                        [--beams 1,4] [--batch-size 32] [--limit N] [--repeat 3]
#                        [--data ../shared/data/multi30k] [--python PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/demo-en-de
SRC=en
THREADS=1,2
BEAMS=1,4
BATCH=32
LIMIT=""
REPEAT=3
DATA=../shared/data/multi30k
PY=${HOME}/.cache/tk-py/bin/python
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --src) SRC=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --beams) BEAMS=$2; shift 2 ;;
    --batch-size) BATCH=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if ! "$PY" -c "import ctranslate2, transformers, torch" 2>/dev/null; then
  echo "error: $PY lacks ctranslate2 / transformers / torch; install them (see the header of $0)" >&2
  exit 1
fi
TK_TOOLCHAIN_DIR="$(bash scripts/setup-toolchain.sh | tail -n 1)"
export TK_TOOLCHAIN_DIR
cargo build --release --quiet
BIN=target/release/transformer-kernels
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
zcat "$DATA/test_2016_flickr.$SRC.gz" > "$TMP/src.txt"
LIMIT_ARGS=()
[ -n "$LIMIT" ] && LIMIT_ARGS=(--limit "$LIMIT")

echo "== $(date -u +%Y-%m-%d) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== ours"
first=1
for t in ${THREADS//,/ }; do
  for rep in $(seq "$REPEAT"); do
    "$BIN" bench --model "$MODEL" --backend cpu --threads "$t" --input "$TMP/src.txt" \
      "${LIMIT_ARGS[@]}" --batch-size "$BATCH" --beam "$BEAMS" --ids-out "$TMP/ids.txt" \
      --csv "$TMP/ours.$t.$rep.csv" | grep -E '^(cpu |on )' | sed "s/^/threads $t run $rep: /"
    if [ $first = 1 ]; then head -n 1 "$TMP/ours.$t.$rep.csv" > "$TMP/ours.csv"; first=0; fi
    grep '^generate,' "$TMP/ours.$t.$rep.csv" >> "$TMP/ours.csv"
  done
done

echo "== CTranslate2"
CT2_DIR=${HOME}/.cache/tk-ct2/$(basename "$MODEL")
if [ ! -f "$CT2_DIR/model.bin" ] || [ "$MODEL/model.safetensors" -nt "$CT2_DIR/model.bin" ]; then
  "$(dirname "$PY")/ct2-transformers-converter" --model "$MODEL" --output_dir "$CT2_DIR" --force \
    > "$TMP/convert.log" 2>&1 || { cat "$TMP/convert.log" >&2; exit 1; }
fi
MAX_LEN=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('max_length', 512))" \
  "$MODEL/generation_config.json" 2>/dev/null || echo 512)
"$PY" scripts/ct2_bench.py --ct2-model "$CT2_DIR" --ids "$TMP/ids.txt" --batch-size "$BATCH" \
  --beam "$BEAMS" --threads "$THREADS" --max-length "$MAX_LEN" --repeat "$REPEAT" \
  --compare "$TMP/ours.csv"
