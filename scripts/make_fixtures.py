#!/usr/bin/env python3
"""Build the parity fixtures under tests/fixtures/ (see tests/fixtures/README.md).

Install (CPU is enough; not run by CI):
    python -m venv ~/.cache/tk-py
    ~/.cache/tk-py/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    ~/.cache/tk-py/bin/pip install "transformers>=5" sentencepiece safetensors numpy protobuf
    (do NOT install sacremoses; MarianTokenizer would then warn only, which is what we want)

Run from the repository root:
    ~/.cache/tk-py/bin/python scripts/make_fixtures.py [--data ../shared/data/multi30k] [--out tests/fixtures]

What it does, all from fixed seeds (re-running gives the same bytes on the same library versions):
  1. trains small SentencePiece unigram models on Multi30k train (en, de, fr), Marian style
     (eos id 0 "</s>", unk id 1 "<unk>", no bos/pad), single-threaded;
  2. builds a shared vocab.json the way Marian conversion does ("</s>" 0, "<unk>" 1, the source
     pieces, then the target pieces not yet present, "<pad>" LAST) and saves it, with the spm
     files, through MarianTokenizer.save_pretrained;
  3. builds small random MarianMTModel checkpoints (every LayerNorm random, random non-zero
     final_logits_bias, head_dim not a power of two, one per activation, one stored in f16);
  4. reloads each checkpoint from disk as Hugging Face would and records the reference results
     (encoder states, teacher-forced logits, greedy / beam ids, alone and batched) in
     expected.json.gz.
MarianTokenizer ids of every line of test_2016_flickr (en, de, fr) are recorded by
scripts/make_tokenizer_fixtures.py (tests/fixtures/tokenizer), not here.
"""

import argparse
import gzip
import io
import json
import math
import os
import random
import shutil
import tempfile

import numpy as np
import sentencepiece as spm
import torch
import transformers
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

SEED = 20261129
SPM_PIECES = 400  # pieces per language model (incl. </s>, <unk>)
PRETRAIN_STEPS = 300  # short deterministic training so that search outputs are not degenerate
PRETRAIN_BATCH = 48
MAX_LENGTH = 20  # generation max_length (decoder length incl. decoder_start_token_id)
TF_MAX_TARGET = 6  # teacher-forced decoder_input_ids length cap
DECIMALS = 6  # floats are rounded to this many decimal places in the JSON files
# Lines of test_2016_flickr (0-based) used as fixture sentences: varied lengths.
SENTENCE_LINES = [6, 4, 18, 1, 0, 3]
N_TF = 2  # teacher-forced logits for the first N_TF of SENTENCE_LINES (alone and as one batch)

# name, source lang, target lang, d_model, heads, ffn, activation, storage dtype, seed offset,
# SentencePiece normalization rule (nmt_nfkc is what opus-mt ships: its precompiled charsmap
# makes each .spm ~240 KB, so only one model uses it to stay under the 3 MB budget).
MODELS = [
    ("marian-swish-ende", "en", "de", 48, 4, 64, "swish", "float32", 1, "nmt_nfkc"),
    ("marian-relu-ende", "en", "de", 40, 2, 56, "relu", "float32", 2, "identity"),
    ("marian-gelu-enfr-f16", "en", "fr", 36, 3, 64, "gelu", "float16", 4, "identity"),
]


def write_json_gz(path, obj):
    """Compact JSON, gzipped (keeps tests/fixtures under 3 MB); mtime 0 so that the same
    content gives the same bytes."""
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=9) as gz:
        gz.write(data)


def read_lines(data, split, lang):
    with gzip.open(os.path.join(data, f"{split}.{lang}.gz"), "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def train_spm(lines, out_path, normalization):
    """Unigram SentencePiece, Marian conventions, deterministic (one thread, no shuffling)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        normalization_rule_name=normalization,
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=SPM_PIECES,
        model_type="unigram",
        character_coverage=1.0,
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    with open(out_path, "wb") as f:
        f.write(buf.getvalue())


def spm_pieces(path):
    sp = spm.SentencePieceProcessor(model_file=path)
    return [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i))
    ]


def build_vocab(src_spm, tgt_spm):
    """Marian conversion order: </s>, <unk>, pieces (source first, then new target ones), <pad> last."""
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in spm_pieces(src_spm) + spm_pieces(tgt_spm):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def make_tokenizer(dirpath, src_spm, tgt_spm, src_lang, tgt_lang):
    tmp = tempfile.mkdtemp()
    try:
        vocab = build_vocab(src_spm, tgt_spm)
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        tok = MarianTokenizer(
            source_spm=src_spm,
            target_spm=tgt_spm,
            vocab=os.path.join(tmp, "vocab.json"),
            source_lang=src_lang,
            target_lang=tgt_lang,
        )
        tok.save_pretrained(dirpath)
    finally:
        shutil.rmtree(tmp)
    return MarianTokenizer.from_pretrained(dirpath)


def randomize(model, gen, d_model):
    """Large enough random weights that search outputs vary; every tensor distinct."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5, generator=gen))
            elif name.endswith("layer_norm.bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif name == "model.shared.weight":
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / math.sqrt(d_model)))
            elif name.endswith(".weight"):
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(fan_in)))
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            # embed_positions are frozen sinusoidal tables: left alone
        bias = torch.randn(model.final_logits_bias.shape, generator=gen) * 0.5
        model.final_logits_bias.copy_(bias)


def pretrain(model, tok, pairs, seed):
    """A few hundred Adam steps on Multi30k: a purely random tied-embedding decoder only repeats
    one token; after this the outputs vary and stop at EOS. LayerNorms start random and stay
    distinct; final_logits_bias is a buffer, so it keeps its random values."""
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    pad = tok.pad_token_id
    model.train()
    for step in range(PRETRAIN_STEPS):
        idx = [rng.randrange(len(pairs)) for _ in range(PRETRAIN_BATCH)]
        batch = tok(
            [pairs[i][0] for i in idx],
            text_target=[pairs[i][1] for i in idx],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=60,
        )
        batch["labels"][batch["labels"] == pad] = -100
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == PRETRAIN_STEPS - 1:
            print(f"    pretrain step {step} loss {loss.item():.3f}")
    model.eval()


def check_layer_norms(model):
    """D2: every LayerNorm weight and bias differs from 1 / 0 and from every other one."""
    seen = []
    for name, p in model.named_parameters():
        if "layer_norm" in name:
            ref = torch.ones_like(p) if name.endswith("weight") else torch.zeros_like(p)
            assert not torch.allclose(p, ref), name
            for other_name, q in seen:
                assert not torch.allclose(p, q), (name, other_name)
            seen.append((name, p.detach().clone()))


def rounded(t):
    return np.round(t.detach().to(torch.float64).numpy(), DECIMALS).tolist()


def strip_pad(ids, pad):
    return [i for i in ids if i != pad]


def build_model(root, tokdir_cache, spec, pairs):
    name, sl, tl, d_model, heads, ffn, act, dtype, seed_off, norm = spec
    out = os.path.join(root, "models", name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tok = make_tokenizer(out, tokdir_cache[(sl, norm)], tokdir_cache[(tl, norm)], sl, tl)
    vocab_size = len(tok.encoder)
    pad = tok.pad_token_id
    assert pad == vocab_size - 1 and tok.eos_token_id == 0 and tok.unk_token_id == 1
    config = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        activation_function=act,
        max_position_embeddings=64,
        scale_embedding=True,
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
        bos_token_id=0,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        architectures=["MarianMTModel"],
    )
    torch.manual_seed(SEED + seed_off)
    model = MarianMTModel(config).eval()
    gen = torch.Generator().manual_seed(SEED + seed_off)
    randomize(model, gen, d_model)
    pretrain(model, tok, pairs, SEED + seed_off)
    check_layer_norms(model)
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]],
        bos_token_id=0,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        max_length=MAX_LENGTH,
        num_beams=4,
        pad_token_id=pad,
    )
    if dtype == "float16":
        model = model.half()
    model.save_pretrained(out, safe_serialization=True)

    # Reload exactly as a user would; compute in f32 (an f16 file is upcast on load).
    model = MarianMTModel.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    tok = MarianTokenizer.from_pretrained(out)
    return out, model, tok, config


def generation_settings(model):
    """The settings generate() actually used: generation_config.json plus HF's defaults."""
    g = model.generation_config
    defaults = GenerationConfig._get_default_generation_params()

    def eff(key):
        value = getattr(g, key, None)
        return defaults.get(key) if value is None else value

    out = {
        key: eff(key)
        for key in (
            "max_length",
            "num_beams",
            "length_penalty",
            "early_stopping",
            "do_sample",
            "bad_words_ids",
            "eos_token_id",
            "forced_eos_token_id",
            "pad_token_id",
            "decoder_start_token_id",
            "no_repeat_ngram_size",
            "repetition_penalty",
            "min_length",
        )
    }
    out["greedy_num_beams"] = 1
    out["nbest_num_return_sequences"] = 2
    return out


@torch.no_grad()
def run_cases(model, tok, sources, targets):
    pad = tok.pad_token_id
    V = model.config.vocab_size
    res = {"sentences": [], "batch": {}}

    def greedy(enc):
        return model.generate(**enc, num_beams=1, do_sample=False).tolist()

    def beam(enc):
        return model.generate(**enc, num_beams=4, do_sample=False).tolist()

    def nbest(enc):
        o = model.generate(
            **enc,
            num_beams=4,
            num_return_sequences=2,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        return o.sequences.tolist(), rounded(o.sequences_scores)

    def tf_inputs(tgt_texts):
        labels = [tok(text_target=t).input_ids for t in tgt_texts]
        # decoder_input_ids = shift_right(labels) = [decoder_start] + labels[:-1], capped.
        return [([pad] + ids[:-1])[:TF_MAX_TARGET] for ids in labels]

    tf_ids = tf_inputs(targets[:N_TF])
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        enc = tok([src], return_tensors="pt")
        ids = enc.input_ids[0].tolist()
        hidden = model.get_encoder()(**enc).last_hidden_state[0]
        case = {
            "source_text": src,
            "reference_text": tgt,
            "source_ids": ids,
            "encoder_last_hidden_state": rounded(hidden),
        }
        if i < N_TF:
            dec = torch.tensor([tf_ids[i]])
            logits = model(**enc, decoder_input_ids=dec).logits[0]
            assert logits.shape[-1] == V
            case["decoder_input_ids"] = tf_ids[i]
            case["logits"] = rounded(logits)
        g = greedy(enc)[0]
        b = beam(enc)[0]
        nb_ids, nb_scores = nbest(enc)
        case["greedy_ids"] = g
        case["greedy_text"] = tok.decode(g, skip_special_tokens=True)
        case["beam4_ids"] = b
        case["beam4_text"] = tok.decode(b, skip_special_tokens=True)
        case["beam4_nbest2"] = {"ids": nb_ids, "scores": nb_scores}
        res["sentences"].append(case)

    enc = tok(sources, return_tensors="pt", padding=True)
    hidden = model.get_encoder()(**enc).last_hidden_state
    lens = enc.attention_mask.sum(1).tolist()
    batch = {
        "input_ids": enc.input_ids.tolist(),
        "attention_mask": enc.attention_mask.tolist(),
        "encoder_last_hidden_state": [rounded(hidden[b, : lens[b]]) for b in range(len(sources))],
    }
    # Teacher forcing on the first N_TF sentences as one batch (sources and decoder inputs right-padded).
    enc_tf = tok(sources[:N_TF], return_tensors="pt", padding=True)
    tmax = max(len(x) for x in tf_ids)
    dec = torch.tensor([x + [pad] * (tmax - len(x)) for x in tf_ids])
    dmask = torch.tensor([[1] * len(x) + [0] * (tmax - len(x)) for x in tf_ids])
    logits = model(**enc_tf, decoder_input_ids=dec, decoder_attention_mask=dmask).logits
    batch["tf_input_ids"] = enc_tf.input_ids.tolist()
    batch["tf_attention_mask"] = enc_tf.attention_mask.tolist()
    batch["decoder_input_ids"] = dec.tolist()
    batch["decoder_attention_mask"] = dmask.tolist()
    batch["logits"] = [rounded(logits[b, : len(tf_ids[b])]) for b in range(N_TF)]
    batch["greedy_ids"] = greedy(enc)
    batch["beam4_ids"] = beam(enc)
    nb_ids, nb_scores = nbest(enc)
    batch["beam4_nbest2"] = {"ids": nb_ids, "scores": nb_scores}
    res["batch"] = batch

    # Sanity: batched search equals alone (after stripping pad), as DESIGN.md requires.
    for b, case in enumerate(res["sentences"]):
        for key in ("greedy_ids", "beam4_ids"):
            assert strip_pad(batch[key][b], pad) == strip_pad(case[key], pad), (key, b)
    return res


def check_not_degenerate(res, pad):
    """Fail loudly if the model only repeats a token or never stops before max_length."""
    outs = [c["greedy_ids"] for c in res["sentences"]] + [c["beam4_ids"] for c in res["sentences"]]
    distinct = [len(set(strip_pad(o[1:], pad))) for o in outs]
    lengths = [1 + len(strip_pad(o[1:], pad)) for o in outs]  # incl. decoder_start, excl. pad
    early = sum(1 for n in lengths if n < MAX_LENGTH)
    summary = {"distinct_tokens": distinct, "lengths": lengths, "ending_before_max_length": early}
    print("   ", summary)
    assert min(distinct) >= 3 and early >= 2, summary
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap.add_argument("--data", default=os.path.join(repo, "..", "shared", "data", "multi30k"))
    ap.add_argument("--out", default=os.path.join(repo, "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", help="build only these model names (default: all)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)

    test = {lang: read_lines(args.data, "test_2016_flickr", lang) for lang in ("en", "de", "fr")}
    train = {lang: read_lines(args.data, "train", lang) for lang in ("en", "de", "fr")}
    spm_dir = tempfile.mkdtemp()
    spm_paths = {}
    for spec in MODELS:
        for lang in (spec[1], spec[2]):
            key = (lang, spec[9])
            if key not in spm_paths:
                path = os.path.join(spm_dir, f"{lang}.{spec[9]}.spm")
                train_spm(train[lang], path, spec[9])
                spm_paths[key] = path
    print("trained spm:", {k: os.path.getsize(v) for k, v in spm_paths.items()})

    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    for spec in MODELS:
        name, sl, tl = spec[0], spec[1], spec[2]
        if args.only and name not in args.only:
            continue
        print("building", name)
        pairs = list(zip(train[sl], train[tl]))
        out, model, tok, config = build_model(args.out, spm_paths, spec, pairs)
        sources = [test[sl][i] for i in SENTENCE_LINES]
        targets = [test[tl][i] for i in SENTENCE_LINES]
        res = run_cases(model, tok, sources, targets)
        summary = check_not_degenerate(res, tok.pad_token_id)
        expected = {
            "model": name,
            "source_lang": sl,
            "target_lang": tl,
            "storage_dtype": spec[7],
            "spm_normalization": spec[9],
            "compute_dtype": "float32",
            "float_decimals": DECIMALS,
            "test_2016_flickr_lines": SENTENCE_LINES,
            "vocab_size": config.vocab_size,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "unk_token_id": tok.unk_token_id,
            "decoder_start_token_id": config.decoder_start_token_id,
            "generation": generation_settings(model),
            "search_summary": summary,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "sentencepiece": spm.__version__},
            **res,
        }
        write_json_gz(os.path.join(out, "expected.json.gz"), expected)
    shutil.rmtree(spm_dir)
    total = 0
    for dp, _, fs in os.walk(args.out):
        for fn in fs:
            total += os.path.getsize(os.path.join(dp, fn))
    print(f"fixtures total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
