#!/usr/bin/env python3
"""Hugging Face `MarianMTModel.generate` on the same inputs as
`transformer-kernels bench --model DIR --ids-out FILE`: the same source ids
(sorted by length, one sentence per line), dtype, batch sizes and beam
widths, model load excluded, timed the same way (wall clock around the
generate calls after one untimed batch; torch.cuda.synchronize() before each
clock read). Prints sentences/s and target tokens/s, and with --compare the
ratio ours / Hugging Face from our CSV.

Runs on the GPU machine (scripts/device-check.sh, step e2e); needs torch and
transformers, not sentencepiece (the ids are given). Never part of CI.

Usage:
  python3 scripts/hf_generate_bench.py --model models/demo-en-de --ids e2e.ids \
      --dtype bf16 --batch-size 32,128 --beam 1,4 --csv hf_e2e.csv --compare e2e.csv
"""

import argparse
import csv
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="source ids, one sentence per line")
    ap.add_argument("--dtype", default="bf16", choices=["f32", "f16", "bf16"])
    ap.add_argument("--batch-size", default="32,128")
    ap.add_argument("--beam", default="1,4")
    ap.add_argument("--csv")
    ap.add_argument("--compare", help="our bench --model CSV, for the ratio")
    a = ap.parse_args()

    import torch
    from transformers import GenerationConfig, MarianMTModel

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    # .to(dtype) as well: older transformers name the load argument torch_dtype.
    model = MarianMTModel.from_pretrained(a.model).to(device=dev, dtype=dtype).eval()
    base = GenerationConfig.from_pretrained(a.model)
    pad = model.config.pad_token_id
    with open(a.ids) as f:
        sources = [[int(t) for t in line.split()] for line in f if line.strip()]
    print(f"hf_generate_bench: {len(sources)} sentences, {a.dtype} on {dev} "
          f"({torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}")

    def batch_tensors(chunk):
        n = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), n), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        for i, s in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids.to(dev), mask.to(dev)

    def generate(chunk, beam):
        ids, mask = batch_tensors(chunk)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=base,
                             num_beams=beam, num_return_sequences=1, do_sample=False)
        # Generated ids: after the decoder start token, up to the EOS included.
        toks = 0
        for row in out[:, 1:].tolist():
            for t in row:
                if t == pad:
                    break
                toks += 1
        return toks

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    rows = []
    print(f"{'beam':>4} {'batch':>6} {'sentences':>9} {'tokens':>9} {'seconds':>9} {'sentences/s':>11} {'tokens/s':>11}")
    with torch.inference_mode():
        for beam in [int(b) for b in a.beam.split(",")]:
            for batch in [int(b) for b in a.batch_size.split(",")]:
                generate(sources[:batch], beam)
                sync()
                t0 = time.perf_counter()
                toks = sum(generate(sources[i:i + batch], beam) for i in range(0, len(sources), batch))
                sync()
                secs = time.perf_counter() - t0
                rows.append((beam, batch, len(sources), toks, secs))
                print(f"{beam:>4} {batch:>6} {len(sources):>9} {toks:>9} {secs:>9.3f} "
                      f"{len(sources) / secs:>11.1f} {toks / secs:>11.1f}", flush=True)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["engine", "dtype", "beam", "batch", "sentences", "target_tokens", "seconds"])
            for beam, batch, n, toks, secs in rows:
                w.writerow(["hf", a.dtype, beam, batch, n, toks, f"{secs:.6f}"])
    if a.compare:
        import os
        if not os.path.exists(a.compare):
            print(f"no {a.compare} (our run did not finish): no ratio")
            return 0
        ours = {}
        with open(a.compare) as f:
            for r in csv.DictReader(f):
                if r["kind"] == "generate" and r["dtype"] == a.dtype:
                    ours[(int(r["beam"]), int(r["batch"]))] = float(r["seconds"])
        print(f"ours vs Hugging Face generate ({a.dtype}, same ids, same batches): speed-up = HF seconds / ours")
        for beam, batch, n, toks, secs in rows:
            o = ours.get((beam, batch))
            ratio = f"{secs / o:.2f}x" if o else "-"
            print(f"  beam {beam} batch {batch}: HF {secs:.3f} s, ours {o if o else '-'} s, speed-up {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
