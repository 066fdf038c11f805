#!/usr/bin/env python3
"""Translate a file, one sentence per line, with Hugging Face MarianMTModel.generate.

The peer for the Rust CLI (`transformer-kernels translate`): same checkpoint directory, same
generation settings (generation_config.json unless overridden), f32 on the CPU. Used by
scripts/eval_bleu.sh.

Install (not needed by CI):
    ~/.cache/tk-py/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    ~/.cache/tk-py/bin/pip install "transformers>=5" sentencepiece safetensors numpy protobuf

    ~/.cache/tk-py/bin/python scripts/hf_translate.py --model models/demo-en-de \
        --input src.txt --output hyp.txt [--beam 4] [--max-length 128] [--threads 2]

Empty or whitespace-only lines give an empty line without running the model (as the CLI does).
Prints one line to stderr: lines, seconds (model load excluded and included) and sentences/second.
"""

import argparse
import sys
import time

import torch
from transformers import MarianMTModel, MarianTokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Marian checkpoint directory")
    ap.add_argument("--input", required=True, help="UTF-8 text, one sentence per line")
    ap.add_argument("--output", required=True)
    ap.add_argument("--beam", type=int, default=None, help="num_beams (default: generation_config.json)")
    ap.add_argument("--max-length", type=int, default=None, help="default: generation_config.json")
    ap.add_argument("--batch-size", type=int, default=32, help="sentences per generate call")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--target-lang", default=None, help="prepend >>xx<< (multilingual models only)")
    ap.add_argument("--timing", default=None, help="also write 'translate_seconds total_seconds' to this file")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.time()
    tok = MarianTokenizer.from_pretrained(args.model)
    model = MarianMTModel.from_pretrained(args.model, dtype=torch.float32).eval()
    with open(args.input, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    gen_kw = {}
    if args.beam is not None:
        gen_kw["num_beams"] = args.beam
    if args.max_length is not None:
        gen_kw["max_length"] = args.max_length

    t0 = time.time()
    todo = [i for i, line in enumerate(lines) if line.strip()]
    todo.sort(key=lambda i: len(tok(lines[i]).input_ids))  # length-sorted batches: little padding
    out = [""] * len(lines)
    with torch.no_grad():
        for k in range(0, len(todo), args.batch_size):
            idx = todo[k : k + args.batch_size]
            texts = [lines[i] for i in idx]
            if args.target_lang:
                texts = [f">>{args.target_lang}<< {t}" for t in texts]
            enc = tok(texts, return_tensors="pt", padding=True)
            gen = model.generate(**enc, **gen_kw)
            for i, text in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
                out[i] = text
    secs = time.time() - t0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in out))
    total = time.time() - t_start
    if args.timing:
        with open(args.timing, "w") as f:
            f.write(f"{secs:.3f} {total:.3f}\n")
    print(
        f"hf_translate: {len(lines)} lines, {secs:.2f} s translating ({total:.2f} s with load), "
        f"{len(lines) / secs if secs > 0 else float('inf'):.2f} sentences/s, threads {torch.get_num_threads()}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
