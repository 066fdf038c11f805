#!/usr/bin/env python3
"""Train the demo translation models (Multi30k, English->German / English->French).

The result is a Hugging Face Marian checkpoint laid out exactly like opus-mt: config.json,
model.safetensors (f16), source.spm, target.spm, vocab.json (shared, <pad> last),
generation_config.json (num_beams, max_length, bad_words_ids [[pad]]), plus MODEL_CARD.md.

Install (CPU is enough; a GPU trains in minutes):
    python -m venv ~/.cache/tk-py
    ~/.cache/tk-py/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    ~/.cache/tk-py/bin/pip install "transformers>=5" sentencepiece sacrebleu safetensors numpy protobuf

Run from the repository root, one process per language pair (they can run in parallel; the
defaults are the settings of the committed models, see their MODEL_CARD.md):
    ~/.cache/tk-py/bin/python scripts/train_demo.py --pair en-de --budget-min 90 --threads 1
    ~/.cache/tk-py/bin/python scripts/train_demo.py --pair en-fr --budget-min 90 --threads 1
Rewrite MODEL_CARD.md from the last run's <work-dir>/summary.json:
    ~/.cache/tk-py/bin/python scripts/train_demo.py --pair en-de --card-only
Quick smoke run (a few steps, tiny model, writes to /tmp):
    ~/.cache/tk-py/bin/python scripts/train_demo.py --pair en-de --smoke
Resume an interrupted run (state in --work-dir) for another N minutes:
    ~/.cache/tk-py/bin/python scripts/train_demo.py --pair en-de --resume --budget-min N

Training: Transformer (post-LN, sinusoidal positions, scale_embedding, swish, tied embeddings:
MarianConfig as opus-mt uses it), label-smoothed cross-entropy, Adam with linear warmup and
inverse-sqrt decay, batches by tokens, greedy val BLEU (sacrebleu) on a val subset at a fixed
interval, best checkpoint on val kept; at the end the best weights are stored in f16, reloaded
as a user would (f32) and scored on test_2016_flickr with generate (greedy and beam 4).
"""

import argparse
import gzip
import io
import json
import math
import os
import platform
import random
import shutil
import sys
import time

import numpy as np
import sacrebleu
import sentencepiece as spm
import torch
import torch.nn.functional as F
import transformers
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

LANG_NAMES = {"en": "English", "de": "German", "fr": "French"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def read_lines(data, split, lang):
    with gzip.open(os.path.join(data, f"{split}.{lang}.gz"), "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


# ---------------------------------------------------------------- vocabulary (opus-mt layout)


def train_spm(lines, path, pieces, seed):
    """Unigram SentencePiece with Marian's ids (</s> 0, <unk> 1, no bos/pad), nmt_nfkc
    normalization as opus-mt ships; single-threaded and unshuffled so it is deterministic."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=pieces,
        model_type="unigram",
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def build_vocab(src_spm, tgt_spm):
    """As the Marian conversion builds vocab.json: </s> 0, <unk> 1, source pieces, new target
    pieces, <pad> last (pad = decoder_start_token_id = vocab_size - 1)."""
    vocab = {"</s>": 0, "<unk>": 1}
    for path in (src_spm, tgt_spm):
        sp = spm.SentencePieceProcessor(model_file=path)
        for i in range(sp.get_piece_size()):
            if sp.is_control(i) or sp.is_unknown(i):
                continue
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    return vocab


def make_tokenizer(out, src_lang, tgt_lang, train, args):
    tmp = os.path.join(args.work_dir, "spm")
    os.makedirs(tmp, exist_ok=True)
    src_path = os.path.join(tmp, "source.spm")
    tgt_path = os.path.join(tmp, "target.spm")
    train_spm(train[src_lang], src_path, args.src_pieces, args.seed)
    train_spm(train[tgt_lang], tgt_path, args.tgt_pieces, args.seed)
    vocab_path = os.path.join(tmp, "vocab.json")
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump(build_vocab(src_path, tgt_path), f, ensure_ascii=False, indent=2)
    tok = MarianTokenizer(
        source_spm=src_path, target_spm=tgt_path, vocab=vocab_path, source_lang=src_lang, target_lang=tgt_lang
    )
    tok.save_pretrained(out)
    return MarianTokenizer.from_pretrained(out)


# ---------------------------------------------------------------- data


def encode_pairs(tok, src_lines, tgt_lines, max_len):
    src = tok(src_lines).input_ids
    tgt = tok(text_target=tgt_lines).input_ids
    pairs = [(s, t) for s, t in zip(src, tgt) if len(s) <= max_len and len(t) <= max_len]
    return pairs


def make_batches(pairs, batch_tokens, rng):
    """Length-bucketed batches whose padded size (rows x longest side) stays under batch_tokens."""
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][1]), len(pairs[i][0]), rng.random()))
    batches, cur, longest = [], [], 0
    for i in order:
        n = max(len(pairs[i][0]), len(pairs[i][1]))
        if cur and max(longest, n) * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(pairs, idx, pad):
    src = [pairs[i][0] for i in idx]
    tgt = [pairs[i][1] for i in idx]
    S = max(map(len, src))
    T = max(map(len, tgt))
    input_ids = torch.full((len(idx), S), pad, dtype=torch.long)
    attn = torch.zeros((len(idx), S), dtype=torch.long)
    dec_in = torch.full((len(idx), T), pad, dtype=torch.long)
    labels = torch.full((len(idx), T), -100, dtype=torch.long)
    for b, (s, t) in enumerate(zip(src, tgt)):
        input_ids[b, : len(s)] = torch.tensor(s)
        attn[b, : len(s)] = 1
        dec_in[b, 0] = pad  # decoder_start_token_id
        dec_in[b, 1 : len(t)] = torch.tensor(t[:-1])
        labels[b, : len(t)] = torch.tensor(t)
    return input_ids, attn, dec_in, labels


# ---------------------------------------------------------------- model


def make_config(vocab_size, pad, args):
    return MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn,
        decoder_ffn_dim=args.ffn,
        activation_function="swish",
        max_position_embeddings=512,
        scale_embedding=True,
        dropout=args.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=pad,
        eos_token_id=0,
        bos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        architectures=["MarianMTModel"],
    )


def generation_config(pad, args):
    return GenerationConfig(
        bad_words_ids=[[pad]],
        bos_token_id=0,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        max_length=args.max_length,
        num_beams=4,
        pad_token_id=pad,
    )


def lr_at(step, args):
    step = max(step, 1)
    return args.lr * min(step / args.warmup, math.sqrt(args.warmup / step))


@torch.no_grad()
def translate(model, tok, lines, num_beams, batch_size=64, max_length=None):
    """Sorted by length for speed; returns hypotheses in input order."""
    model.eval()
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
    out = [None] * len(lines)
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        enc = tok([lines[i] for i in idx], return_tensors="pt", padding=True)
        kw = {"num_beams": num_beams, "do_sample": False}
        if max_length:
            kw["max_length"] = max_length
        gen = model.generate(**enc, **kw)
        for i, text in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
            out[i] = text
    return out


def bleu(hyps, refs):
    """Corpus BLEU (sacrebleu defaults: detokenized input, 13a tokenization) and its signature."""
    metric = sacrebleu.metrics.BLEU()
    return metric.corpus_score(hyps, [refs]), str(metric.get_signature())


# ---------------------------------------------------------------- main loop


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap.add_argument("--pair", default="en-de", choices=["en-de", "en-fr"])
    ap.add_argument("--data", default=os.path.join(repo, "..", "shared", "data", "multi30k"))
    ap.add_argument("--out", default=None, help="output dir (default models/demo-<pair>)")
    ap.add_argument("--work-dir", default=None, help="checkpoints, spm, logs (default /tmp/tk-train/<pair>)")
    ap.add_argument("--budget-min", type=float, default=90.0, help="wall-clock training budget (minutes)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--src-pieces", type=int, default=2500)
    ap.add_argument("--tgt-pieces", type=int, default=3000)
    ap.add_argument("--d-model", type=int, default=192)
    ap.add_argument("--layers", type=int, default=3, help="encoder layers = decoder layers")
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=400, help="linear warmup steps, then inverse sqrt")
    ap.add_argument("--batch-tokens", type=int, default=3000, help="padded tokens per batch (longest side)")
    ap.add_argument("--max-len", type=int, default=100, help="drop training pairs longer than this (pieces)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CPU")
    ap.add_argument("--val-every-min", type=float, default=10.0)
    ap.add_argument("--val-size", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=128, help="generation max_length (config)")
    ap.add_argument("--resume", action="store_true", help="continue from <work-dir>/last.pt")
    ap.add_argument("--eval-only", action="store_true", help="export best.pt and evaluate, no training")
    ap.add_argument("--smoke", action="store_true", help="tiny model, ~1 minute, outputs under /tmp")
    ap.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from <work-dir>/summary.json")
    args = ap.parse_args()
    src, tgt = args.pair.split("-")
    args.src_lang, args.tgt_lang = src, tgt
    if args.smoke:
        args.d_model, args.layers, args.heads, args.ffn = 32, 1, 2, 64
        args.src_pieces = args.tgt_pieces = 500
        args.budget_min, args.val_every_min, args.val_size = 0.5, 0.25, 50
        args.out = args.out or f"/tmp/tk-smoke/demo-{args.pair}"
        args.work_dir = args.work_dir or f"/tmp/tk-smoke/work-{args.pair}"
    args.out = args.out or os.path.join(repo, "models", f"demo-{args.pair}")
    args.work_dir = args.work_dir or f"/tmp/tk-train/{args.pair}"
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    log("args", vars(args))
    if args.card_only:
        with open(os.path.join(args.work_dir, "summary.json")) as f:
            summary = json.load(f)
        for key, value in summary["args"].items():  # the settings of the run that produced it
            if key not in ("card_only", "resume", "eval_only"):
                setattr(args, key, value)
        tok = MarianTokenizer.from_pretrained(args.out)
        config = MarianConfig.from_pretrained(args.out)
        write_model_card(args, config, summary, len(tok.encoder))
        return

    sl, tl = args.src_lang, args.tgt_lang
    train = {l: read_lines(args.data, "train", l) for l in (sl, tl)}
    val = {l: read_lines(args.data, "val", l) for l in (sl, tl)}
    test = {l: read_lines(args.data, "test_2016_flickr", l) for l in (sl, tl)}

    if args.resume or args.eval_only:
        tok = MarianTokenizer.from_pretrained(args.out)
    else:
        tok = make_tokenizer(args.out, sl, tl, train, args)
    pad = tok.pad_token_id
    vocab_size = len(tok.encoder)
    log(f"vocab_size {vocab_size} (source spm {args.src_pieces}, target spm {args.tgt_pieces}), pad {pad}")

    config = make_config(vocab_size, pad, args)
    model = MarianMTModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters {n_params / 1e6:.2f} M")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)

    state = {
        "step": 0,
        "epoch": 0,
        "batch_in_epoch": 0,
        "train_seconds": 0.0,
        "wall_seconds": 0.0,
        "best_bleu": -1.0,
        "best_step": 0,
        "history": [],
    }
    last_path = os.path.join(args.work_dir, "last.pt")
    best_path = os.path.join(args.work_dir, "best.pt")
    if args.resume or args.eval_only:
        ck = torch.load(last_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        random.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed at step {state['step']} epoch {state['epoch']} best {state['best_bleu']:.2f}")

    if not args.eval_only:
        pairs = encode_pairs(tok, train[sl], train[tl], args.max_len)
        n_tgt = sum(len(t) for _, t in pairs)
        n_src = sum(len(s) for s, _ in pairs)
        log(f"train pairs {len(pairs)}, source pieces {n_src}, target pieces {n_tgt}")
        train_loop(model, opt, tok, pairs, val, state, args, last_path, best_path)

    export_and_evaluate(tok, config, test, state, args, best_path, n_params)


def save_state(path, model, opt, state):
    tmp = path + ".tmp"
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "state": state,
            "py_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    os.replace(tmp, path)


def validate(model, tok, val, state, args, best_path, last_path, opt):
    sl, tl = args.src_lang, args.tgt_lang
    t0 = time.time()
    hyps = translate(model, tok, val[sl][: args.val_size], num_beams=1, max_length=args.max_length)
    score = bleu(hyps, val[tl][: args.val_size])[0].score
    state["history"].append(
        {"step": state["step"], "epoch": state["epoch"], "train_min": state["train_seconds"] / 60, "val_bleu": score}
    )
    improved = score > state["best_bleu"]
    if improved:
        state["best_bleu"], state["best_step"] = score, state["step"]
        torch.save(model.state_dict(), best_path)
    save_state(last_path, model, opt, state)
    log(
        f"VAL step {state['step']} epoch {state['epoch']} train {state['train_seconds'] / 60:.1f} min "
        f"greedy BLEU {score:.2f} (best {state['best_bleu']:.2f} @ {state['best_step']}) "
        f"[{time.time() - t0:.0f}s] e.g. {hyps[0]!r}"
    )
    model.train()


def train_loop(model, opt, tok, pairs, val, state, args, last_path, best_path):
    """Trains until the wall-clock budget of this run is spent (validation included), validating
    every --val-every-min minutes and once at the end. state["train_seconds"] counts step time
    only; state["wall_seconds"] counts everything, across resumed runs."""
    pad = tok.pad_token_id
    V = model.config.vocab_size
    budget = args.budget_min * 60.0
    run_start = time.time()
    wall_at_start = state.get("wall_seconds", 0.0)
    last_val = time.time()
    tok_count, loss_sum, loss_n, t_log = 0, 0.0, 0, time.time()
    model.train()
    done = False
    while not done:
        rng = random.Random(args.seed + state["epoch"])  # per-epoch order: resumable
        batches = make_batches(pairs, args.batch_tokens, rng)
        for bi in range(state.get("batch_in_epoch", 0), len(batches)):
            t_step = time.time()
            input_ids, attn, dec_in, labels = collate(pairs, batches[bi], pad)
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"] + 1, args)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(input_ids=input_ids, attention_mask=attn, decoder_input_ids=dec_in).logits
            loss = F.cross_entropy(
                logits.float().view(-1, V),
                labels.view(-1),
                ignore_index=-100,
                label_smoothing=args.label_smoothing,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state["step"] += 1
            state["batch_in_epoch"] = bi + 1
            state["train_seconds"] += time.time() - t_step
            ntok = int((labels != -100).sum())
            tok_count += ntok
            loss_sum += loss.item() * ntok
            loss_n += ntok
            if state["step"] % 50 == 0:
                dt = time.time() - t_log
                log(
                    f"step {state['step']} epoch {state['epoch']} loss {loss_sum / loss_n:.3f} "
                    f"lr {lr_at(state['step'], args):.2e} {tok_count / dt:.0f} tgt tok/s "
                    f"train {state['train_seconds'] / 60:.1f} min"
                )
                tok_count, loss_sum, loss_n, t_log = 0, 0.0, 0, time.time()
            done = time.time() - run_start >= budget
            if done or time.time() - last_val >= args.val_every_min * 60.0:
                state["wall_seconds"] = wall_at_start + time.time() - run_start
                validate(model, tok, val, state, args, best_path, last_path, opt)
                last_val = time.time()
                t_log = time.time()
                tok_count = 0
            if done:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    state["wall_seconds"] = wall_at_start + time.time() - run_start
    save_state(last_path, model, opt, state)


def export_and_evaluate(tok, config, test, state, args, best_path, n_params):
    """Best weights -> f16 safetensors in the opus-mt layout; reload as f32 and score on test."""
    model = MarianMTModel(config)
    model.load_state_dict(torch.load(best_path, weights_only=True))
    model.generation_config = generation_config(tok.pad_token_id, args)
    model = model.half()
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    model = MarianMTModel.from_pretrained(args.out, dtype=torch.float32).eval()
    tok = MarianTokenizer.from_pretrained(args.out)
    sl, tl = args.src_lang, args.tgt_lang
    results = {}
    for name, beams in (("greedy", 1), ("beam4", 4)):
        t0 = time.time()
        hyps = translate(model, tok, test[sl], num_beams=beams)
        secs = time.time() - t0
        b, sig = bleu(hyps, test[tl])
        results[name] = {"bleu": round(b.score, 2), "score": str(b), "signature": sig, "seconds": round(secs, 1)}
        with open(os.path.join(args.work_dir, f"test_2016_flickr.{name}.{tl}"), "w", encoding="utf-8") as f:
            f.write("\n".join(hyps) + "\n")
        log(f"TEST {args.pair} {name}: {b} ({secs:.0f} s for {len(hyps)} lines)")
    summary = {
        "pair": args.pair,
        "test_2016_flickr": results,
        "best_val_bleu_greedy": round(state["best_bleu"], 2),
        "best_step": state["best_step"],
        "steps": state["step"],
        "epochs_completed": state["epoch"],
        "train_minutes_steps": round(state["train_seconds"] / 60, 1),
        "train_minutes_wall": round(state.get("wall_seconds", 0.0) / 60, 1),
        "history": state["history"],
        "parameters": n_params,
        "args": {k: v for k, v in vars(args).items() if k not in ("data", "out", "work_dir")},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentencepiece": spm.__version__, "sacrebleu": sacrebleu.__version__},
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, torch threads {args.threads}",
    }
    with open(os.path.join(args.work_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    write_model_card(args, config, summary, len(tok.encoder))
    log("wrote", args.out)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def write_model_card(args, config, s, vocab_size):
    sl, tl = args.src_lang, args.tgt_lang
    r = s["test_2016_flickr"]
    history = ", ".join(f"{h['train_min']:.0f} min {h['val_bleu']:.1f}" for h in s["history"])
    command = (
        f"python scripts/train_demo.py --pair {args.pair} --budget-min {args.budget_min:g} "
        f"--threads {args.threads} --d-model {args.d_model} --heads {args.heads} --ffn {args.ffn} "
        f"--layers {args.layers} --src-pieces {args.src_pieces} --tgt-pieces {args.tgt_pieces} "
        f"--val-every-min {args.val_every_min:g} --val-size {args.val_size} --seed {args.seed}"
    )
    card = f"""# demo-{args.pair}: {LANG_NAMES[sl]} → {LANG_NAMES[tl]} on Multi30k

A small Transformer (Marian / opus-mt layout, Hugging Face format) trained from scratch by
`scripts/train_demo.py` on the Multi30k training set. It is the project's demo and test model,
not a general-purpose translator.

## Data
- Training: Multi30k train ({sl}–{tl}, 29,000 image captions; pairs longer than {args.max_len} pieces dropped).
- Checkpoint selection: greedy BLEU on the first {args.val_size} lines of Multi30k val.
- Test: Multi30k test_2016_flickr (1,000 lines), never used in training or selection.

## Vocabulary
SentencePiece unigram, trained on the training data only: source.spm ({sl}, {args.src_pieces} pieces),
target.spm ({tl}, {args.tgt_pieces} pieces), `nmt_nfkc` normalization, Marian ids (`</s>` 0, `<unk>` 1).
vocab.json is shared by both sides as in opus-mt: `</s>` 0, `<unk>` 1, source pieces, then target
pieces not already present, `<pad>` last: vocab_size {vocab_size}, pad = decoder_start_token_id = {vocab_size - 1}.

## Architecture (config.json)
MarianMTModel: d_model {config.d_model}, {config.encoder_layers} encoder + {config.decoder_layers} decoder layers,
{config.encoder_attention_heads} heads (head_dim {config.d_model // config.encoder_attention_heads}), ffn {config.encoder_ffn_dim},
activation swish, post-LN, sinusoidal positions, scale_embedding true, embeddings tied (encoder,
decoder, output), final_logits_bias zero. {s['parameters'] / 1e6:.2f} M parameters, stored in **f16**
(model.safetensors); load as f32 or f16.
generation_config.json: num_beams 4, max_length {args.max_length}, bad_words_ids [[pad]], forced_eos_token_id 0.

## Training
Label-smoothed ({args.label_smoothing}) cross-entropy, Adam (0.9, 0.98), peak lr {args.lr}, {args.warmup} warmup
steps then inverse square root, batches of ≤ {args.batch_tokens} padded tokens, dropout {args.dropout}, bf16 autocast
{'on' if args.bf16 else 'off'}, gradient clipping 1.0, seed {args.seed}.
{s['steps']} steps, {s['epochs_completed']} full epochs, {s['train_minutes_wall']} minutes wall clock including
validation ({s['train_minutes_steps']} minutes of training steps) on {s['machine']}, shared with other jobs.
Best val greedy BLEU {s['best_val_bleu_greedy']} at step {s['best_step']} (the stored weights).
Val greedy BLEU by training time: {history}.
Reproduce: `{command}`
(CPU runs are not bit-reproducible across machines or under a different CPU load: the budget is
wall clock, so the number of steps depends on the machine).

## Why two bilingual models and not one multilingual model
Chosen by quality per training minute on the machine this was trained on (2 shared CPU cores):
two bilingual models train in two processes at once (one thread each), so each language pair
gets a whole core's updates; one multilingual model (`>>de<<` / `>>fr<<` prepended to the
source, as multilingual opus-mt does) would be one process splitting its updates between two
target languages, with a larger joint target vocabulary (slower output softmax). Sharing the
English encoder (Multi30k is multi-way parallel, the English side is identical) does not make
up for half the updates per pair within a budget of about an hour and a half. The CLI selects
the pair with `--model`; no `--target-lang` is needed.

## Results: test_2016_flickr, Hugging Face generate (f16 weights loaded as f32)
| search | BLEU (sacrebleu, detokenized, 13a) |
|---|---|
| greedy | {r['greedy']['bleu']} |
| beam 4 | {r['beam4']['bleu']} |

sacrebleu signature `{r['greedy']['signature']}`; greedy `{r['greedy']['score']}`;
beam 4 `{r['beam4']['score']}`.
Hugging Face generate time on this machine ({args.threads} thread(s), batch 64 sorted by length):
greedy {r['greedy']['seconds']} s, beam 4 {r['beam4']['seconds']} s for 1,000 lines.

## Limits
Image-caption domain only (short descriptive sentences about people, animals and scenes);
vocabulary and style of Multi30k; long, technical or conversational input will translate poorly
or hallucinate. Trained for an hour and a half on one CPU thread: far below opus-mt quality.
"""
    with open(os.path.join(args.out, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
        f.write(card)


if __name__ == "__main__":
    main()
