#!/usr/bin/env bash
# BLEU of the Rust CLI against Hugging Face generate on Multi30k test_2016_flickr.
#
# Translates the test set with `cargo run --release -- translate` and with
# scripts/hf_translate.py (same checkpoint, same search settings, f32 on the CPU), scores both
# with sacrebleu (detokenized, default 13a tokenization) against the references, and prints,
# per search setting: both BLEU scores, their difference, the number of lines where the two
# outputs differ, and sentences/second for each (wall clock of the whole command, model load
# included, same machine, same run; for HF also generate alone, without Python start-up).
#
# Needs: cargo, and a Python with torch, transformers, sentencepiece, sacrebleu
# (install line in scripts/hf_translate.py; default ~/.cache/tk-py/bin/python).
#
# Usage (from the repository root):
#   scripts/eval_bleu.sh [--model models/demo-en-de] [--src en --tgt de] [--beams "1 4"]
#                        [--data ../shared/data/multi30k] [--limit N] [--threads N]
#                        [--max-length N] [--python PATH] [--keep DIR]
# --src/--tgt default to the last two dash-separated parts of the model dir name (demo-en-de).
# --threads sets the threads of both sides (default: number of CPUs): torch's for HF, the
# fast CPU backend's worker pool for the Rust CLI (`translate --threads`): the same cores.
# --keep DIR keeps the hypotheses there (default: a temp dir, removed).
set -euo pipefail

MODEL=models/demo-en-de
SRC=""
TGT=""
BEAMS="1 4"
DATA=../shared/data/multi30k
LIMIT=""
THREADS=$(nproc)
MAXLEN=""
PY=${PYTHON:-$HOME/.cache/tk-py/bin/python}
KEEP=""

die() { echo "eval_bleu.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --src) SRC=$2; shift 2 ;;
    --tgt) TGT=$2; shift 2 ;;
    --beams|--beam) BEAMS=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --max-length) MAXLEN=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

[[ -d "$MODEL" ]] || die "model directory not found: $MODEL"
name=$(basename "$MODEL")
if [[ -z "$SRC" || -z "$TGT" ]]; then
  IFS=- read -r -a parts <<< "$name"
  n=${#parts[@]}
  (( n >= 2 )) || die "cannot infer languages from '$name'; pass --src and --tgt"
  SRC=${SRC:-${parts[n-2]}}
  TGT=${TGT:-${parts[n-1]}}
fi
for f in "$DATA/test_2016_flickr.$SRC.gz" "$DATA/test_2016_flickr.$TGT.gz"; do
  [[ -f "$f" ]] || die "test file not found: $f"
done
[[ -x "$PY" ]] || die "python not found: $PY (set --python or PYTHON)"
"$PY" -c "import sacrebleu, transformers, torch" 2>/dev/null || die "$PY lacks sacrebleu/transformers/torch"

if [[ -n "$KEEP" ]]; then mkdir -p "$KEEP"; WORK=$KEEP; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
if [[ -n "$LIMIT" ]]; then
  # awk reads to the end: head would close the pipe early (SIGPIPE under pipefail).
  zcat "$DATA/test_2016_flickr.$SRC.gz" | awk -v n="$LIMIT" 'NR <= n' > "$WORK/src.txt"
  zcat "$DATA/test_2016_flickr.$TGT.gz" | awk -v n="$LIMIT" 'NR <= n' > "$WORK/ref.txt"
else
  zcat "$DATA/test_2016_flickr.$SRC.gz" > "$WORK/src.txt"
  zcat "$DATA/test_2016_flickr.$TGT.gz" > "$WORK/ref.txt"
fi
LINES=$(wc -l < "$WORK/src.txt")

echo "building the CLI (cargo build --release) ..." >&2
cargo build --release --quiet

now() { date +%s.%N; }
# Prints "<BLEU>\t<sacrebleu signature>" (sacrebleu defaults: detokenized input, 13a).
bleu() {
  "$PY" - "$WORK/ref.txt" "$1" <<'PYEOF'
import sys
import sacrebleu
read = lambda p: [l.rstrip("\n") for l in open(p, encoding="utf-8")]
m = sacrebleu.metrics.BLEU()
s = m.corpus_score(read(sys.argv[2]), [read(sys.argv[1])])
print(f"{s.score:.2f}\t{m.get_signature()}")
PYEOF
}
rate() { awk -v n="$LINES" -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", n / (b - a) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
count_diff() { awk 'NR==FNR { a[FNR] = $0; next } a[FNR] != $0 { d++ } END { print d + 0 }' "$1" "$2"; }

status=0
printf 'model %s (%s->%s), %s lines of test_2016_flickr, threads %s\n' "$MODEL" "$SRC" "$TGT" "$LINES" "$THREADS"
for beam in $BEAMS; do
  extra=()
  [[ -n "$MAXLEN" ]] && extra+=(--max-length "$MAXLEN")

  t0=$(now)
  if ! cargo run --release --quiet -- translate --model "$MODEL" --input "$WORK/src.txt" \
      --output "$WORK/rust.beam$beam.txt" --beam "$beam" --device cpu --threads "$THREADS" \
      "${extra[@]}"; then
    echo "beam $beam: the Rust CLI failed" >&2; status=1; continue
  fi
  t1=$(now)
  "$PY" scripts/hf_translate.py --model "$MODEL" --input "$WORK/src.txt" \
    --output "$WORK/hf.beam$beam.txt" --beam "$beam" --threads "$THREADS" \
    --timing "$WORK/hf.beam$beam.timing" "${extra[@]}"
  t2=$(now)

  rust_lines=$(wc -l < "$WORK/rust.beam$beam.txt")
  [[ "$rust_lines" == "$LINES" ]] || { echo "beam $beam: Rust output has $rust_lines lines, expected $LINES" >&2; status=1; }
  IFS=$'\t' read -r rb sig < <(bleu "$WORK/rust.beam$beam.txt")
  IFS=$'\t' read -r hb _ < <(bleu "$WORK/hf.beam$beam.txt")
  nd=$(count_diff "$WORK/rust.beam$beam.txt" "$WORK/hf.beam$beam.txt")
  delta=$(awk -v a="$rb" -v b="$hb" 'BEGIN { d = a - b; if (d < 0) d = -d; printf "%.2f", d }')
  label=$([[ "$beam" == 1 ]] && echo "greedy" || echo "beam $beam")
  # HF's own timing without Python start-up and model load (torch import alone takes seconds).
  read -r hf_gen _ < "$WORK/hf.beam$beam.timing"
  printf '%-8s BLEU rust %s  hf %s  |diff| %s  differing lines %s/%s\n' "$label" "$rb" "$hb" "$delta" "$nd" "$LINES"
  printf '         speed: rust %s sent/s (%s s wall)  hf %s sent/s (%s s wall; %s sent/s generate only)\n' \
    "$(rate "$t0" "$t1")" "$(secs "$t0" "$t1")" "$(rate "$t1" "$t2")" "$(secs "$t1" "$t2")" "$(rate 0 "$hf_gen")"
done
echo "sacrebleu signature: ${sig:-?}"
[[ -n "$KEEP" ]] && echo "hypotheses kept in $KEEP" >&2
exit $status
