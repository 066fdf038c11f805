#!/usr/bin/env python3
"""PyTorch on the shapes of `transformer-kernels bench`, for comparison in the
same run (scripts/device-check.sh run). Not used by CI or the Rust tests.

  python3 torch_compare.py [--iters N] [--csv out.csv]
      times PyTorch's residual add + layer_norm, embedding * scale + a position
      table, (logits + bias, pad -> -inf) -> log_softmax -> topk, bias +
      activation, and f32 -> dtype conversion of the weight shapes, with CUDA events around N back-to-back calls, and reports
      GB/s with the SAME byte counts as `bench` (the bytes the fused op must
      move), so the two columns compare directly. For the GEMM (`linear_*`
      rows, f16 and bf16): cuBLAS through `x @ W.T` alone (`linear_*_cublas`)
      and `F.linear` + activation + residual as separate ops (`linear_*`, the
      same names and byte counts as ours), plus cuBLAS's bf16 rate at
      8192^3 (`cublas_peak`), the peak the summary's "% peak" refers to.
      For attention (`attention*` rows, f16 and bf16):
      `scaled_dot_product_attention` with the flash backend where it applies
      (same shapes, causal where ours is; decode: one query over all keys).

  python3 torch_compare.py --summary bench.csv torch.csv
      prints the short table: ours vs PyTorch at the model's largest shapes
      (needs no torch).

PyTorch runs its ops unfused (e.g. x + residual, then layer_norm), which is
the baseline the fused kernels are meant to beat.
"""
import argparse
import csv
import math
import sys

D_MODEL = 512
VOCAB = 58101
FFN = 2048
TOKENS = [1, 16, 128, 1024, 4096, 16384]
# The GEMM rows of `bench` (src/ops/linear.rs): m x (role, n, k, epilogue).
LINEAR_M = [1, 8, 64, 512, 4096, 16384]
LINEAR_SHAPES = [
    ("qkv", 3 * D_MODEL, D_MODEL, "bias"),
    ("out_proj", D_MODEL, D_MODEL, "bias+residual"),
    ("fc1", FFN, D_MODEL, "bias+swish"),
    ("fc2", D_MODEL, FFN, "bias+residual"),
    ("logits", VOCAB, D_MODEL, "bias"),
]
DTYPES = ["f32", "f16", "bf16"]


# The attention rows of `bench` (src/ops/attention.rs): (batch, heads,
# q_len, k_len, head_dim, causal).
ATTENTION_CASES = (
    [(b, 8, l, l, 64, c) for b in (32, 128) for l in (16, 32, 64, 128, 256) for c in (False, True)]
    + [(4, 8, 1024, 1024, 64, True), (1, 8, 4096, 4096, 64, True)]
    + [(b, 8, 1, k, 64, True) for b in (1, 32, 128) for k in (32, 128, 1024)]
)


def time_fn(torch, fn, iters, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def sinusoidal(torch, n, d, dtype):
    """Marian positions: first half sin, second half cos (not interleaved)."""
    pos = torch.arange(n, dtype=torch.float64, device="cuda")[:, None]
    n_sin = (d + 1) // 2
    j = torch.arange(d, device="cuda")
    k = torch.where(j < n_sin, j, j - n_sin).to(torch.float64)
    angle = pos * torch.exp(-(2 * k / d) * math.log(10000.0))[None, :]
    table = torch.where(j[None, :] < n_sin, torch.sin(angle), torch.cos(angle))
    return table.to(dtype)


def run(args):
    import torch
    import torch.nn.functional as F

    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
    size = {"f32": 4, "f16": 2, "bf16": 2}
    rows = []

    def add(op, dname, shape, seconds, nbytes, flops=0):
        gbps = nbytes / seconds / 1e9
        tflops = flops / seconds / 1e12
        rows.append((op, dname, shape, seconds * 1e6, nbytes, gbps, flops, tflops))
        print(f"{op:<22} {dname:<5} {shape:<20} {seconds * 1e6:>10.2f} {nbytes:>12} {gbps:>9.1f} "
              f"{tflops:>9.1f}", flush=True)

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print(f"{'op':<22} {'dtype':<5} {'shape':<20} {'time us':>10} {'bytes':>12} {'GB/s':>9} {'TFLOP/s':>9}")
    # cuBLAS's bf16 matrix rate: the peak the GEMM rows are measured against.
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    sec = time_fn(torch, lambda: a @ b, 10)
    add("cublas_peak", "bf16", "8192x8192x8192", sec, 3 * 8192 * 8192 * 2, 2 * 8192 ** 3)
    del a, b
    acts = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for dname in ("f16", "bf16"):
        t, s = dt[dname], size[dname]
        for b, h, sq, sk, hd, causal in ATTENTION_CASES:
            q = torch.rand(b, h, sq, hd, device="cuda", dtype=t) * 2 - 1
            kk = torch.rand(b, h, sk, hd, device="cuda", dtype=t) * 2 - 1
            vv = torch.rand(b, h, sk, hd, device="cuda", dtype=t) * 2 - 1
            flops = 4 * b * h * sq * sk * hd // (2 if causal and sq > 1 else 1)
            nbytes = (2 * b * sq * h * hd + 2 * b * sk * h * hd) * s
            label = "attention_decode" if sq <= 4 else ("attention_causal" if causal else "attention")

            def sdpa():
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                    return F.scaled_dot_product_attention(q, kk, vv, is_causal=causal and sq > 1)
            sec = time_fn(torch, sdpa, args.iters)
            add(label, dname, f"{b}x{h}x{sq}x{sk}x{hd}", sec, nbytes, flops)
            del q, kk, vv
        for role, n, k, epi in LINEAR_SHAPES:
            w = (torch.rand(n, k, device="cuda", dtype=t) * 2 - 1) / math.sqrt(k)
            bias = torch.rand(n, device="cuda", dtype=t) * 2 - 1
            act = next((acts[a] for a in acts if a in epi), None)
            for m in LINEAR_M:
                x = torch.rand(m, k, device="cuda", dtype=t) * 2 - 1
                res = torch.rand(m, n, device="cuda", dtype=t) * 2 - 1 if "residual" in epi else None
                shape = f"{m}x{n}x{k}"
                flops = 2 * m * n * k
                nbytes = (m * k + n * k + m * n + n + (m * n if res is not None else 0)) * s
                sec = time_fn(torch, lambda: x @ w.T, args.iters)
                add(f"linear_{role}_cublas", dname, shape, sec, (m * k + n * k + m * n) * s, flops)

                def fused():
                    y = F.linear(x, w, bias)
                    if act is not None:
                        y = act(y)
                    if res is not None:
                        y = y + res
                    return y
                sec = time_fn(torch, fused, args.iters)
                add(f"linear_{role}", dname, shape, sec, nbytes, flops)
            del x, w
    for dname in DTYPES:
        t, s = dt[dname], size[dname]
        for r_, c_ in ((D_MODEL, D_MODEL), (FFN, D_MODEL), (VOCAB, D_MODEL)):
            w = torch.rand(r_, c_, device="cuda", dtype=torch.float32) * 2 - 1
            # copy=True: f32 -> f32 must move the bytes, as ours does.
            sec = time_fn(torch, lambda: w.to(dtype=t, copy=True), args.iters)
            add("convert_from_f32", dname, f"{r_}x{c_}", sec, r_ * c_ * (4 + s))
        for h in (D_MODEL, 1024):
            g = torch.rand(h, device="cuda", dtype=t) + 0.5
            b = torch.rand(h, device="cuda", dtype=t)
            for n in TOKENS:
                if h != D_MODEL and n != 16384:
                    continue
                x = torch.rand(n, h, device="cuda", dtype=t) * 4 - 2
                r = torch.rand(n, h, device="cuda", dtype=t) * 4 - 2
                sec = time_fn(torch, lambda: F.layer_norm(x + r, (h,), g, b, 1e-5), args.iters)
                add("layer_norm_residual", dname, f"{n}x{h}", sec, (3 * n * h + 2 * h) * s)
        table = torch.rand(VOCAB, D_MODEL, device="cuda", dtype=t) * 0.2 - 0.1
        scale = math.sqrt(D_MODEL)
        for n in TOKENS:
            ids = torch.randint(0, VOCAB, (n,), device="cuda", dtype=torch.int32)
            pos = sinusoidal(torch, n, D_MODEL, t)
            sec = time_fn(torch, lambda: F.embedding(ids, table) * scale + pos, args.iters)
            add("embedding_positions", dname, f"{n}x{D_MODEL}", sec, 2 * n * D_MODEL * s + 4 * n)
        bias = torch.rand(VOCAB, device="cuda", dtype=t) * 2 - 1
        for n in (1, 8, 32, 128):
            logits = torch.rand(n, VOCAB, device="cuda", dtype=t) * 20 - 10
            for k in (1, 8):
                def step():
                    sc = (logits + bias).float()
                    sc[:, VOCAB - 1] = -math.inf
                    return torch.topk(torch.log_softmax(sc, dim=-1), k, dim=-1)
                sec = time_fn(torch, step, args.iters)
                add("logits_topk", dname, f"{n}x{VOCAB} k={k}", sec, (n * VOCAB + VOCAB) * s + n * k * 8)
        fb = torch.rand(FFN, device="cuda", dtype=t) * 2 - 1
        acts = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}
        for n in (128, 16384):
            x = torch.rand(n, FFN, device="cuda", dtype=t) * 8 - 4
            for name, act in acts.items():
                sec = time_fn(torch, lambda: act(x + fb), args.iters)
                add(f"bias_{name}", dname, f"{n}x{FFN}", sec, (2 * n * FFN + FFN) * s)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["kernel", "dtype", "shape", "time_us", "bytes", "gbps", "flops", "tflops"])
            for r in rows:
                w.writerow([r[0], r[1], r[2], f"{r[3]:.3f}", r[4], f"{r[5]:.2f}", r[6], f"{r[7]:.3f}"])


def summary(bench_csv, torch_csv):
    def load(path):
        try:
            with open(path, newline="") as f:
                return {(r["kernel"], r["dtype"], r["shape"]): r for r in csv.DictReader(f)}
        except OSError as e:
            print(f"(no {path}: {e})")
            return {}

    ours, theirs = load(bench_csv), load(torch_csv)
    keys = [
        ("layer_norm_residual", d, "16384x512") for d in DTYPES
    ] + [
        ("layer_norm_residual", "bf16", "1x512"),
        ("layer_norm_residual", "bf16", "16384x1024"),
        ("embedding_positions", "bf16", "16384x512"),
        ("logits_topk", "bf16", f"1x{VOCAB} k=1"),
        ("logits_topk", "bf16", f"128x{VOCAB} k=8"),
        ("bias_gelu", "bf16", f"16384x{FFN}"),
        ("bias_swish", "bf16", f"16384x{FFN}"),
        ("convert_from_f32", "bf16", f"{VOCAB}x{D_MODEL}"),
    ]
    print(f"{'kernel':<20} {'dtype':<5} {'shape':<18} {'ours us':>9} {'ours GB/s':>10} {'% copy':>7} "
          f"{'torch us':>9} {'torch GB/s':>10} {'speedup':>8}")
    for k in keys:
        o, t = ours.get(k), theirs.get(k)
        if o is None and t is None:
            continue
        ous = float(o["time_us"]) if o else float("nan")
        tus = float(t["time_us"]) if t else float("nan")
        print(f"{k[0]:<20} {k[1]:<5} {k[2]:<18} {ous:>9.2f} {float(o['gbps']) if o else float('nan'):>10.1f} "
              f"{float(o['pct_copy']) if o else float('nan'):>6.1f}% {tus:>9.2f} "
              f"{float(t['gbps']) if t else float('nan'):>10.1f} {tus / ous if o and t else float('nan'):>7.2f}x")

    # Attention: ours against PyTorch SDPA; TFLOP/s, and % copy for decode.
    print(f"\nattention (vs scaled_dot_product_attention)")
    print(f"{'kernel':<18} {'dtype':<5} {'shape':<20} {'ours us':>9} {'TFLOP/s':>8} {'% copy':>7} {'sdpa us':>9} {'speedup':>8}")
    for b, h, sq, sk, hd, causal in ATTENTION_CASES:
        label = "attention_decode" if sq <= 4 else ("attention_causal" if causal else "attention")
        key = (label, "bf16", f"{b}x{h}x{sq}x{sk}x{hd}")
        o, t = ours.get(key), theirs.get(key)
        if o is None and t is None:
            continue
        nan = float("nan")
        ous = float(o["time_us"]) if o else nan
        tus = float(t["time_us"]) if t else nan
        print(f"{label:<18} bf16  {key[2]:<20} {ous:>9.2f} {float(o['tflops']) if o and 'tflops' in o else nan:>8.1f} "
              f"{float(o['pct_copy']) if o else nan:>6.1f}% {tus:>9.2f} {tus / ous:>7.2f}x")

    # The GEMM: ours (fused epilogue) against cuBLAS alone and against
    # cuBLAS + the epilogue as separate ops; % of cuBLAS's 8192^3 bf16 rate
    # for large m, % of the copy bandwidth on weight bytes for small m.
    peak = theirs.get(("cublas_peak", "bf16", "8192x8192x8192"))
    peak_tf = float(peak["tflops"]) if peak else float("nan")
    print(f"\nGEMM (cuBLAS bf16 8192^3: {peak_tf:.1f} TFLOP/s)")
    print(f"{'linear':<16} {'dtype':<5} {'shape':<18} {'ours us':>9} {'TFLOP/s':>8} {'% peak':>7} {'% copy':>7} "
          f"{'cuBLAS us':>10} {'x cuBLAS':>9} {'+epi us':>9} {'x +epi':>7}")
    for role, n, k, _ in LINEAR_SHAPES:
        for m in LINEAR_M:
            for d in ("bf16",):
                key = (f"linear_{role}", d, f"{m}x{n}x{k}")
                o, sep = ours.get(key), theirs.get(key)
                cub = theirs.get((f"linear_{role}_cublas", d, f"{m}x{n}x{k}"))
                if o is None and sep is None:
                    continue
                nan = float("nan")
                ous = float(o["time_us"]) if o else nan
                otf = float(o["tflops"]) if o and "tflops" in o else nan
                cus = float(cub["time_us"]) if cub else nan
                sus = float(sep["time_us"]) if sep else nan
                print(f"{role:<16} {d:<5} {m}x{n}x{k:<10} {ous:>9.2f} {otf:>8.1f} {100 * otf / peak_tf:>6.1f}% "
                      f"{float(o['pct_copy']) if o else nan:>6.1f}% {cus:>10.2f} {cus / ous:>8.2f}x {sus:>9.2f} "
                      f"{sus / ous:>6.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--csv")
    p.add_argument("--summary", nargs=2, metavar=("BENCH_CSV", "TORCH_CSV"))
    args = p.parse_args()
    if args.summary:
        summary(*args.summary)
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
