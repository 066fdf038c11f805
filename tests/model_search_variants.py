"""Hugging Face results for tests/model_search_variants.rs: generate() on the fixture
checkpoints (tests/fixtures/models, made by scripts/make_fixtures.py) with search settings the
fixtures do not cover (early_stopping True / "never", length penalties, max_new_tokens,
min_length, min_new_tokens, n-best). Not run by CI. Run with the project venv:
    ~/.cache/tk-py/bin/python tests/model_search_variants.py tests/fixtures/models tests/model_search_variants.json
(torch 2.15 CPU, transformers 5.24)."""
import json, sys, torch
from transformers import MarianMTModel
root = sys.argv[1]
out = {}
settings = [
    dict(num_beams=3, length_penalty=0.6, early_stopping=True, max_length=12, num_return_sequences=3),
    dict(num_beams=3, length_penalty=2.0, early_stopping="never", max_length=12, num_return_sequences=2),
    dict(num_beams=5, length_penalty=0.0, early_stopping="never", max_length=9, num_return_sequences=5),
    dict(num_beams=4, length_penalty=1.0, early_stopping=False, max_new_tokens=6, num_return_sequences=4),
    dict(num_beams=2, length_penalty=-0.5, early_stopping=False, max_length=15, min_length=8, num_return_sequences=2),
    dict(num_beams=1, max_length=12, min_new_tokens=5),
]
for name in ["marian-swish-ende", "marian-relu-ende", "marian-gelu-enfr-f16"]:
    d = f"{root}/{name}"
    model = MarianMTModel.from_pretrained(d, dtype=torch.float32).eval()
    e = json.load(open(f"{d}/expected.json"))
    srcs = [s["source_ids"] for s in e["sentences"]]
    S = max(map(len, srcs)); pad = e["pad_token_id"]
    ids = torch.tensor([s + [pad] * (S - len(s)) for s in srcs])
    mask = torch.tensor([[1] * len(s) + [0] * (S - len(s)) for s in srcs])
    res = []
    for st in settings:
        with torch.no_grad():
            o = model.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **st)
        seqs = o.sequences.tolist()
        scores = o.sequences_scores.tolist() if getattr(o, "sequences_scores", None) is not None else None
        res.append(dict(settings=st, sequences=seqs, scores=scores))
    out[name] = res
json.dump(out, open(sys.argv[2], "w"))
print("ok")
