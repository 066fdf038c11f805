#!/usr/bin/env python3
"""CTranslate2 (fp32, CPU) on the same inputs as
`transformer-kernels bench --model DIR --backend cpu --ids-out FILE`: the same
source ids (sorted by length, one sentence per line), batch size and beam
widths, model load excluded, timed the same way (wall clock around the
translate calls after one untimed batch; the fastest of --repeat runs).
Prints sentences/s and target tokens/s per thread count; with --compare
OURS.csv, the ratio ours / its best.

Driven by scripts/cpu_bench.sh (which converts the checkpoint once with
ct2-transformers-converter). Never part of CI.

Install (once, outside the repository):
  python3 -m venv ~/.cache/tk-py
  ~/.cache/tk-py/bin/pip install ctranslate2 transformers torch sentencepiece

Usage:
  python3 scripts/ct2_bench.py --ct2-model ~/.cache/tk-ct2/demo-en-de --ids ids.txt \
      --batch-size 32 --beam 1,4 --threads 1,2 --max-length 128 [--compare ours.csv]
"""

import argparse
import csv
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ct2-model", required=True, help="converted CTranslate2 model directory")
    ap.add_argument("--ids", required=True, help="source ids, one sentence per line")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--beam", default="1,4")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--max-length", type=int, default=128,
                    help="Hugging Face max_length (start token included)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per setting; the fastest is reported (this VM is noisy)")
    ap.add_argument("--csv", help="write rows: engine,threads,beam,batch,sentences,tokens,seconds")
    ap.add_argument("--compare", help="our bench --model --csv file, for the ratio")
    a = ap.parse_args()

    import ctranslate2

    with open(os.path.join(a.ct2_model, "shared_vocabulary.json")) as f:
        vocab = json.load(f)
    with open(a.ids) as f:
        sources = [[vocab[int(t)] for t in line.split()] for line in f if line.strip()]
    print(f"ct2_bench: {len(sources)} sentences, ctranslate2 {ctranslate2.__version__}, "
          f"float32 on the CPU ({os.cpu_count()} CPUs)")
    rows = []
    print(f"{'engine':<12} {'threads':>7} {'beam':>4} {'batch':>5} {'sentences':>9} "
          f"{'tokens':>8} {'seconds':>8} {'sentences/s':>11}")
    for threads in [int(t) for t in a.threads.split(",")]:
        tr = ctranslate2.Translator(a.ct2_model, device="cpu", compute_type="float32",
                                    inter_threads=1, intra_threads=threads)
        for beam in [int(b) for b in a.beam.split(",")]:
            opts = dict(max_batch_size=a.batch_size, batch_type="examples", beam_size=beam,
                        max_decoding_length=a.max_length - 1, num_hypotheses=1)
            tr.translate_batch(sources[: a.batch_size], **opts)  # warm-up
            dt = float("inf")
            for _ in range(max(1, a.repeat)):
                t0 = time.perf_counter()
                res = tr.translate_batch(sources, **opts)
                dt = min(dt, time.perf_counter() - t0)
            # Generated tokens incl. the end token, as ours counts them.
            tokens = sum(len(r.hypotheses[0]) + 1 for r in res)
            rows.append(("ctranslate2", threads, beam, a.batch_size, len(sources), tokens, dt))
            print(f"{'ctranslate2':<12} {threads:>7} {beam:>4} {a.batch_size:>5} {len(sources):>9} "
                  f"{tokens:>8} {dt:>8.3f} {len(sources) / dt:>11.1f}")
        del tr
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["engine", "threads", "beam", "batch", "sentences", "tokens", "seconds"])
            w.writerows(rows)
    if a.compare:
        ours = {}
        with open(a.compare) as f:
            for r in csv.DictReader(f):
                if r.get("kind", "generate") != "generate":
                    continue
                key = (int(r["beam"]), int(r["batch"]))
                ours[key] = max(ours.get(key, 0.0), float(r["sentences_per_s"]))
        print("\nbeam batch  ours sent/s  ct2 best sent/s (threads)  ratio ours/ct2")
        for beam in sorted({r[2] for r in rows}):
            best = max((r for r in rows if r[2] == beam), key=lambda r: r[4] / r[6])
            ct2 = best[4] / best[6]
            mine = ours.get((beam, a.batch_size))
            if mine is None:
                continue
            print(f"{beam:>4} {a.batch_size:>5} {mine:>12.1f} {ct2:>16.1f} ({best[1]})"
                  f" {mine / ct2:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
