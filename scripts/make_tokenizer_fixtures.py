#!/usr/bin/env python3
"""Tokenizer fixtures: SentencePiece models trained on Multi30k and MarianTokenizer's ids.

Install (once; the project's Python venv already has these):
    python3 -m venv ~/.cache/tk-py
    ~/.cache/tk-py/bin/pip install 'transformers==5.24.*' 'sentencepiece==0.2.*' protobuf

Run from the repository root (not run by CI; the outputs are committed):
    ~/.cache/tk-py/bin/python scripts/make_tokenizer_fixtures.py \
        [--data ../shared/data/multi30k] [--out tests/fixtures/tokenizer]

What it does:
1. Trains one SentencePiece unigram model per language (en, de, fr) on Multi30k train,
   with the default nmt_nfkc normalizer, vocab_size 8000 (hard_vocab_limit off: the
   English side only supports 7823 pieces), the default character_coverage 0.9995 (so
   that rare characters exercise <unk>), one thread (deterministic). Plus one variant,
   en_bytes (see MODELS), for byte fallback, user-defined symbols, identity
   normalization and kept whitespace.
2. Builds the Marian tokenizer directories en-de, de-fr and fr-en, so that every
   language is once the source and once the target side, and en_bytes-en_bytes. Each has one shared vocab.json
   laid out as Marian's conversion does for opus-mt: "</s>" 0, "<unk>" 1, then pieces,
   "<pad>" last (the pad id is the last id). Language tokens >>en<< >>de<< >>fr<< are
   in the vocab, as in multilingual opus-mt models. The directory is written by
   `MarianTokenizer.save_pretrained`, so the files are exactly what Hugging Face reads.
3. Records MarianTokenizer's results:
   - encode_source: `tok(text)["input_ids"]` for EVERY line of test_2016_flickr in the
     source language, for language-prefixed lines (">>de<< ..."), for edge cases
     (empty, whitespace, control characters, emoji, NFKC cases, special-token text),
     and (en-de) for random strings over NFKC-sensitive Unicode blocks.
   - encode_target: `tok(text_target=text)["input_ids"]` for 200 target-language lines.
   - decode_target: `tok.decode(ids, skip_special_tokens=..., use_source_tokenizer=False)`
     for the first 100 of those target ids and for 50 random id sequences over the
     whole vocabulary.
   - decode_source: the same with `use_source_tokenizer=True`, for source ids.
   Note: transformers 5.24 decodes with the *source* spm by default when the vocab is
   shared (`use_source_tokenizer` defaults to `not separate_vocabs`); the script
   checks that this default equals the target-spm decode on every recorded
   sequence with skip_special_tokens=True (what translation output uses). With
   skip_special_tokens=False they can differ: the pieces after each special token
   are decoded separately, and a piece that the source spm does not know keeps
   its leading '▁' (then a space) there; the count is printed.
4. Writes compressed fixtures (gzip, mtime 0: byte-for-byte reproducible). To keep
   tests/fixtures under 3 MB two files are stored in a form the tests rebuild
   byte-for-byte (and check against the recorded size and CRC-32):
     spm/{en,de,fr,en_bytes}.spm.gz        the trained models (== source.spm / target.spm),
                                           the nmt_nfkc ones WITHOUT the bytes of their
                                           precompiled charsmap (identical in the three,
                                           ~140 kB gzipped each)
     spm/nmt_nfkc.charsmap.gz              that charsmap, stored once
     spm/layout.json                       per model: where the charsmap goes back
                                           (byte offset, or null), size, crc32
     {pair}/vocab.pieces.json.gz           vocab.json as save_pretrained wrote it, stored as
                                           {"size", "crc32", "pieces"}: pieces[i] has id i;
                                           the file is json.dumps({piece: id}, indent=2)
                                           (checked here), ~45% smaller gzipped
     {pair}/tokenizer_config.json          as save_pretrained wrote it
     {pair}/cases.json.gz                  the recorded ids and strings
"""

import argparse
import gzip
import io
import json
import os
import random
import shutil
import sys
import tempfile
import warnings
import zlib

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import transformers
from transformers import MarianTokenizer

LANGS = ["en", "de", "fr"]
# name -> (training language, SentencePiece options beyond unigram / one thread).
MODELS = {
    lang: (lang, dict(vocab_size=8000, hard_vocab_limit=False, normalization_rule_name="nmt_nfkc"))
    for lang in LANGS
}
# A variant that reaches what the Marian-style models do not: byte fallback
# (unknown characters as <0xXX> pieces; decoding invalid UTF-8 byte runs),
# user-defined symbols, identity normalization, extra whitespace kept.
MODELS["en_bytes"] = (
    "en",
    dict(
        vocab_size=1200,
        hard_vocab_limit=False,
        normalization_rule_name="identity",
        byte_fallback=True,
        remove_extra_whitespaces=False,
        user_defined_symbols=["<sep>", "dog"],
        character_coverage=0.98,
    ),
)
PAIRS = [("en", "de"), ("de", "fr"), ("fr", "en"), ("en_bytes", "en_bytes")]
# The variant's byte-level ids are long: 300 test lines keep its fixture small.
N_TEST_LINES = {"en_bytes": 300}
LANG_TOKENS = [">>en<<", ">>de<<", ">>fr<<"]
N_ENCODE_TARGET = 200
# Decode cases: the first N_DECODE_LINES encoded lines plus N_RANDOM random id
# sequences, each with skip_special_tokens true and false (300 cases per side;
# every line is still encoded, so the decoder sees every piece kind there).
N_DECODE_LINES = 100
N_PREFIXED = 50
N_RANDOM = 50
SEED = 1234
# Random strings over characters that stress NFKC (compatibility forms,
# combining marks, Hangul, ligatures, presentation forms), whitespace and
# controls, for the en-de pair (the nmt_nfkc charsmap is the same in all
# three models).
N_RANDOM_TEXT = {"en": 200}
RANDOM_TEXT_RANGES = [
    (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E), (0x00, 0x1F), (0x7F, 0xFF),
    (0x100, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x1100, 0x11FF),
    (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2070, 0x209F), (0x2100, 0x218F),
    (0x2460, 0x24FF), (0x2E80, 0x2EFF), (0x3000, 0x30FF), (0x3130, 0x318F),
    (0x3200, 0x33FF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xF900, 0xFAFF),
    (0xFB00, 0xFB4F), (0xFB50, 0xFDFF), (0xFE00, 0xFE6F), (0xFF00, 0xFFEF),
    (0xFFF0, 0xFFFF), (0x1D400, 0x1D7FF), (0x1F100, 0x1F1FF), (0x1F300, 0x1F6FF),
    (0xE0000, 0xE007F),
]


def random_text(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(0, 24)):
        lo, hi = rng.choice(RANDOM_TEXT_RANGES)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)

# Inputs chosen to reach every branch of the normalizer, the lattice and
# MarianTokenizer's own pre-splitting (special tokens, >>xx<< codes).
EDGE_CASES = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    "\u3000",
    "\u00a0",
    "a",
    ".",
    "A  man   with\ttabs\nand newlines ",
    "  leading and trailing  ",
    "Ünïcödé façade naïve",
    "\ufb01ne \ufb02our",
    "\u216b \u00bd \u00b2 \u338f",
    "\uff26\uff35\uff2c\uff2c\u3000\uff57\uff49\uff44\uff54\uff48",
    "\U0001F600\U0001F600 emoji \U0001F436!",
    "你好, 世界",
    "a\u0301e\u0301 composed",
    "\u200b zero\u200dwidth\u200c",
    "\x00\x01\x7f control \x1b[0m",
    "</s>",
    "a </s> b",
    "<unk><pad>",
    "x<pad>y",
    ">>de<< A dog runs.",
    ">>de<<",
    ">>fr<<Un chien",
    ">>xx<< unknown code",
    ">> not a code",
    "<<>>",
    ">><<",
    ">>de<< >>fr<< two codes",
    "A >>de<< in the middle",
    "It's 5 o'clock \u2014 \u201cquoted\u201d \u2018text\u2019 \u2026",
    "$100 & 50% #tag @user",
    "\u00df \u1e9e Stra\u00dfe",
    "\u0152uvre c\u0153ur",
    "\u00abBonjour\u00bb",
    "\ufeffBOM",
    "\u01c5",
    "\u2581 already a meta symbol \u2581\u2581x",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "The " * 60,
]


def gz_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def write_gz(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(gz_bytes(data))


def read_lines(path: str) -> list:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def train(name: str, data: str, work: str) -> str:
    lang, options = MODELS[name]
    lines = read_lines(os.path.join(data, f"train.{lang}.gz"))
    txt = os.path.join(work, f"train.{lang}.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    # Relative paths from inside `work`: the model stores its input path and
    # prefix, and a temporary directory's name would make it differ per run.
    cwd = os.getcwd()
    os.chdir(work)
    try:
        spm.SentencePieceTrainer.train(
            input=os.path.basename(txt),
            model_prefix=name,
            model_type="unigram",
            num_threads=1,
            minloglevel=2,
            **options,
        )
    finally:
        os.chdir(cwd)
    return os.path.join(work, name + ".model")


def marian_vocab(src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor) -> dict:
    vocab = {"</s>": 0, "<unk>": 1}
    for t in LANG_TOKENS:
        vocab[t] = len(vocab)
    for sp in (src, tgt):
        for i in range(sp.get_piece_size()):
            if sp.is_control(i) or sp.is_unknown(i):
                continue
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    return vocab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/multi30k")
    ap.add_argument("--out", default="tests/fixtures/tokenizer")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()

    work = tempfile.mkdtemp(prefix="tok-fixtures-")
    os.makedirs(os.path.join(args.out, "spm"), exist_ok=True)
    models = {}
    layout, charsmaps = {}, set()
    for name in MODELS:
        path = train(name, args.data, work)
        models[name] = path
        with open(path, "rb") as f:
            data = f.read()
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(data)
        charsmap = proto.normalizer_spec.precompiled_charsmap
        offset = None
        stored = data
        if charsmap:
            # The serialized bytes appear exactly once: cutting them out and
            # putting them back at `offset` gives the model file unchanged.
            assert data.count(charsmap) == 1, name
            offset = data.find(charsmap)
            stored = data[:offset] + data[offset + len(charsmap):]
            charsmaps.add(charsmap)
        layout[name] = {"charsmap_offset": offset, "size": len(data), "crc32": zlib.crc32(data)}
        write_gz(os.path.join(args.out, "spm", f"{name}.spm.gz"), stored)
    assert len(charsmaps) == 1, "the nmt_nfkc models must share one charsmap"
    write_gz(os.path.join(args.out, "spm", "nmt_nfkc.charsmap.gz"), charsmaps.pop())
    with open(os.path.join(args.out, "spm", "layout.json"), "w", encoding="utf-8") as f:
        json.dump(layout, f, indent=2, sort_keys=True)
        f.write("\n")
    tests = {
        name: read_lines(os.path.join(args.data, f"test_2016_flickr.{lang}.gz"))
        for name, (lang, _) in MODELS.items()
    }

    rng = random.Random(SEED)
    for src, tgt in PAIRS:
        pair = f"{src}-{tgt}"
        sp_src = spm.SentencePieceProcessor(model_file=models[src])
        sp_tgt = spm.SentencePieceProcessor(model_file=models[tgt])
        raw = os.path.join(work, pair + "-raw")
        os.makedirs(raw)
        shutil.copy(models[src], os.path.join(raw, "source.spm"))
        shutil.copy(models[tgt], os.path.join(raw, "target.spm"))
        with open(os.path.join(raw, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(marian_vocab(sp_src, sp_tgt), f)
        saved = os.path.join(work, pair)
        MarianTokenizer(
            source_spm=os.path.join(raw, "source.spm"),
            target_spm=os.path.join(raw, "target.spm"),
            vocab=os.path.join(raw, "vocab.json"),
        ).save_pretrained(saved)
        tok = MarianTokenizer.from_pretrained(saved)
        for name, lang in (("source.spm", src), ("target.spm", tgt)):
            with open(os.path.join(saved, name), "rb") as a, open(models[lang], "rb") as b:
                assert a.read() == b.read(), f"{pair}/{name} differs from the trained {lang} model"

        out = os.path.join(args.out, pair)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(saved, "vocab.json"), "rb") as f:
            vocab_bytes = f.read()
        vocab = json.loads(vocab_bytes)
        pieces = sorted(vocab, key=vocab.get)
        assert [vocab[p] for p in pieces] == list(range(len(pieces))), f"{pair}: ids not 0..n-1"
        # What the tests rebuild: Python's json.dumps layout (indent 2, ASCII
        # escapes), as transformers' save_json writes it.
        rebuilt = json.dumps({p: i for i, p in enumerate(pieces)}, indent=2).encode("utf-8")
        assert rebuilt == vocab_bytes, f"{pair}: vocab.json is not json.dumps(indent=2)"
        packed = {"size": len(vocab_bytes), "crc32": zlib.crc32(vocab_bytes), "pieces": pieces}
        write_gz(os.path.join(out, "vocab.pieces.json.gz"), json.dumps(packed, ensure_ascii=False).encode("utf-8"))
        shutil.copy(os.path.join(saved, "tokenizer_config.json"), os.path.join(out, "tokenizer_config.json"))

        def enc(text):
            return tok(text)["input_ids"]

        def enc_t(text):
            return tok(text_target=text)["input_ids"]

        lines = tests[src][: N_TEST_LINES.get(src)]
        encode_source = [{"text": t, "ids": enc(t), "kind": "test_2016_flickr"} for t in lines]
        code = f">>{tgt}<< "
        encode_source += [{"text": code + t, "ids": enc(code + t), "kind": "prefixed"} for t in lines[:N_PREFIXED]]
        encode_source += [{"text": t, "ids": enc(t), "kind": "edge"} for t in EDGE_CASES]
        texts = [random_text(rng) for _ in range(N_RANDOM_TEXT.get(src, 0))]
        encode_source += [{"text": t, "ids": enc(t), "kind": "random"} for t in texts]
        encode_target = [{"text": t, "ids": enc_t(t)} for t in tests[tgt][:N_ENCODE_TARGET]]

        n_vocab = len(tok.encoder)
        randoms = []
        for _ in range(N_RANDOM):
            n = rng.randint(0, 30)
            randoms.append([rng.randrange(n_vocab) for _ in range(n)])

        decode_target, decode_source, mismatched_default = [], [], 0
        for ids in [c["ids"] for c in encode_target[:N_DECODE_LINES]] + randoms:
            for skip in (True, False):
                text = tok.decode(ids, skip_special_tokens=skip, use_source_tokenizer=False)
                default = tok.decode(ids, skip_special_tokens=skip)
                assert skip is False or default == text, (pair, ids, default, text)
                mismatched_default += int(default != text)
                decode_target.append({"ids": ids, "skip_special_tokens": skip, "text": text})
        for ids in [c["ids"] for c in encode_source[:N_DECODE_LINES]] + randoms:
            for skip in (True, False):
                text = tok.decode(ids, skip_special_tokens=skip, use_source_tokenizer=True)
                decode_source.append({"ids": ids, "skip_special_tokens": skip, "text": text})

        cases = {
            "source_spm": src,
            "target_spm": tgt,
            "transformers": transformers.__version__,
            "sentencepiece": spm.__version__,
            "vocab_size": n_vocab,
            "pad_id": tok.pad_token_id,
            "eos_id": tok.eos_token_id,
            "unk_id": tok.unk_token_id,
            "encode_source": encode_source,
            "encode_target": encode_target,
            "decode_target": decode_target,
            "decode_source": decode_source,
        }
        write_gz(
            os.path.join(out, "cases.json.gz"),
            json.dumps(cases, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        )
        print(
            f"{pair}: vocab {n_vocab}, encode_source {len(encode_source)}, encode_target {len(encode_target)}, "
            f"decode_target {len(decode_target)} (default source-spm decode differs on {mismatched_default}, all with skip_special_tokens=False), "
            f"decode_source {len(decode_source)}"
        )
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
