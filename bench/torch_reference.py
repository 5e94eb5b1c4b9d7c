"""PyTorch reference for `sparsevlm bench`: the LLaVA-1.5-7B decoder (Vicuna-7B: d 4096, 32 layers,
32 heads of 128, SwiGLU 11008, RMSNorm, rotate-half RoPE) with random bf16 weights and SDPA attention,
timed dense and with the token counts our SparseVLM, SparseVLM v2.0 and FastV schedules keep, eager and
replayed as CUDA graphs, at batch 1 and 8.

The pruning step is modelled the way the official code spends its time: at each pruning layer the rater
rows (the text tokens) attend to every key, the probabilities are averaged over heads and raters on the
visual columns, `topk` picks the kept visual tokens, and the hidden states are gathered. Recycling
(clustering the pruned tokens) is not modelled: the kept count includes the recycled clusters, so the
reference processes the same number of tokens per layer as our engine.

Usage: python3 bench/torch_reference.py [--batches 1,8] [--repeats 20] [--json OUT]
Prints one table; the JSON holds min/median/max per case (milliseconds, CUDA events).
"""

import argparse
import json
import math
import statistics

import torch
import torch.nn.functional as F

D, LAYERS, HEADS, HEAD_DIM, FFN, VOCAB = 4096, 32, 32, 128, 11008, 32000
PRE, VISUAL, TEXT = 35, 576, 25  # 636 prompt tokens, as in performance.md

# Visual tokens processed from a layer on (pruning happens after the previous layer), from `sparsevlm plan`.
SCHEDULES = {
    "dense": {},
    "sparsevlm-v1.5 192": {3: 309, 7: 204, 16: 113},
    "sparsevlm-v1.5 128": {3: 312, 7: 117, 16: 39},
    "sparsevlm-v1.5 64": {3: 82, 7: 32, 16: 18},
    "sparsevlm-v2.0 192": {3: 300, 7: 200, 16: 118},
    "sparsevlm-v2.0 128": {3: 238, 7: 108, 16: 60},
    "sparsevlm-v2.0 64": {3: 66, 7: 34, 16: 20},
    "fastv 64": {2: 47},
}


class Decoder:
    def __init__(self, device, max_len):
        g = torch.Generator(device=device).manual_seed(0)

        def w(*shape):
            return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(torch.bfloat16)

        self.layers = []
        for _ in range(LAYERS):
            self.layers.append(
                dict(
                    qkv=w(3 * D, D),
                    o=w(D, D),
                    gate_up=w(2 * FFN, D),
                    down=w(D, FFN),
                    n1=torch.ones(D, device=device, dtype=torch.bfloat16),
                    n2=torch.ones(D, device=device, dtype=torch.bfloat16),
                )
            )
        self.norm = torch.ones(D, device=device, dtype=torch.bfloat16)
        self.lm_head = w(VOCAB, D)
        inv = 1.0 / (10000.0 ** (torch.arange(0, HEAD_DIM, 2, device=device, dtype=torch.float32) / HEAD_DIM))
        ang = torch.arange(max_len, device=device, dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        self.cos, self.sin = emb.cos().to(torch.bfloat16), emb.sin().to(torch.bfloat16)

    @staticmethod
    def rope(x, cos, sin):
        x1, x2 = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def attention(self, p, h, pos, kv=None):
        b, n, _ = h.shape
        q, k, v = F.linear(h, p["qkv"]).view(b, n, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [b, 1, n, d]
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        if kv is not None:  # decode: append to the cache views
            k_cache, v_cache, length = kv
            k_cache[:, :, length : length + n] = k
            v_cache[:, :, length : length + n] = v
            k, v = k_cache[:, :, : length + n], v_cache[:, :, : length + n]
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.linear(out.transpose(1, 2).reshape(b, n, D), p["o"]), q, k, v

    def layer(self, p, x, pos, kv=None):
        a, q, k, v = self.attention(p, F.rms_norm(x, (D,), p["n1"], 1e-5), pos, kv)
        x = x + a
        gate, up = F.linear(F.rms_norm(x, (D,), p["n2"], 1e-5), p["gate_up"]).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, p["down"]), q, k, v

    def prefill(self, x, schedule, caches=None):
        """x [b, n, D]; returns last-position logits and per-layer (k, v)."""
        b, n, _ = x.shape
        pos = torch.arange(n, device=x.device).expand(b, n)
        visual = VISUAL
        kvs = []
        for i, p in enumerate(self.layers):
            x, q, k, v = self.layer(p, x, pos)
            kvs.append((k, v))
            keep = schedule.get(i + 1)
            if keep is not None and keep < visual:
                # Raters: the text rows; probabilities over every key, averaged on the visual columns.
                rq = q[:, :, PRE + visual :]  # [b, h, t, d]
                s = rq @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM)  # [b, h, t, n]
                s = s.float().softmax(-1)[..., PRE : PRE + visual].mean(dim=(1, 2))  # [b, visual]
                idx = s.topk(keep, dim=-1).indices.sort(dim=-1).values + PRE  # [b, keep]
                rows = torch.cat(
                    [
                        torch.arange(PRE, device=x.device).expand(b, PRE),
                        idx,
                        torch.arange(PRE + visual, x.shape[1], device=x.device).expand(b, -1),
                    ],
                    dim=1,
                )
                x = torch.gather(x, 1, rows[..., None].expand(-1, -1, D))
                visual = keep
                pos = torch.arange(x.shape[1], device=x.device).expand(b, -1)
        logits = F.linear(F.rms_norm(x[:, -1:], (D,), self.norm, 1e-5), self.lm_head)
        return logits, kvs


def timed(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return dict(min=min(times), median=statistics.median(times), max=max(times))


def graphed(fn):
    """Captures `fn` (static shapes and inputs) as a CUDA graph; returns its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def decode_step(model, batch, lengths, device):
    """One decode step over per-layer caches of the given lengths, as a CUDA graph replay."""
    caches = [
        (
            torch.randn(batch, HEADS, l + 1, HEAD_DIM, device=device, dtype=torch.bfloat16),
            torch.randn(batch, HEADS, l + 1, HEAD_DIM, device=device, dtype=torch.bfloat16),
            l,
        )
        for l in lengths
    ]
    x = torch.randn(batch, 1, D, device=device, dtype=torch.bfloat16)

    def step():
        h = x
        for p, kv in zip(model.layers, caches):
            pos = torch.full((batch, 1), kv[2], device=device, dtype=torch.long)
            h = model.layer(p, h, pos, kv)[0]
        return F.linear(F.rms_norm(h, (D,), model.norm, 1e-5), model.lm_head)

    return graphed(step)


def layer_lengths(schedule):
    visual, out = VISUAL, []
    for i in range(LAYERS):
        visual = schedule.get(i, visual)
        out.append(PRE + visual + TEXT)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    n = PRE + VISUAL + TEXT
    model = Decoder(device, n + 16)
    name = torch.cuda.get_device_name(0)
    results = []
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            x = torch.randn(batch, n, D, device=device, dtype=torch.bfloat16)
            for label, schedule in SCHEDULES.items():
                row = dict(case=label, batch=batch)
                row["eager_ms"] = timed(lambda: model.prefill(x, schedule), args.repeats)
                row["graph_ms"] = timed(graphed(lambda: model.prefill(x, schedule)), args.repeats)
                lengths = layer_lengths(schedule)
                row["decode_graph_ms"] = timed(decode_step(model, batch, lengths, device), args.repeats)
                row["kv_bytes_per_sequence"] = sum(lengths) * 2 * HEADS * HEAD_DIM * 2
                results.append(row)
                print(
                    f"{name} | batch {batch} | {label:<20} eager {row['eager_ms']['median']:7.2f} ms"
                    f"  graph {row['graph_ms']['median']:7.2f} ms  decode {row['decode_graph_ms']['median']:6.2f} ms",
                    flush=True,
                )
            torch.cuda.empty_cache()
    report = dict(
        device=name,
        torch=torch.__version__,
        prompt_tokens=n,
        peak_memory_bytes=torch.cuda.max_memory_allocated(),
        results=results,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
