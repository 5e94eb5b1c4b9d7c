"""Turns the results of bench/gpu-run.sh (ours.json, ours-candle.json, torch.json, gpu.txt) into the Markdown
tables of docs/perf.md: our engine against the PyTorch reference from the same run on the same card, with the
floor of each case (FLOPs over the card's bf16 rate, weight bytes over its memory bandwidth).

Usage: python3 bench/report.py RESULTS_DIR [--update docs/perf.md]
Without --update the tables are printed; with it they replace the text between the markers
`<!-- cuda-bench:start -->` and `<!-- cuda-bench:end -->`.
"""

import argparse
import json
import os
import re

# Measured ceilings of the cards this project has run on (a large bf16 matrix product; a device-to-device
# copy, bytes read plus written): performance.md for the H100, this workplace's H200 readings.
CARDS = {"H100": (754e12, 2.94e12), "H200": (788e12, 4.3e12)}
WEIGHT_BYTES = 2 * 6.74e9  # Vicuna-7B in bf16, embeddings and head included


def kv_bytes(row):
    """The KV-cache buffers the run allocated (measured), or, from runs made before the engine measured
    them, the bytes of the kept tokens (accounting)."""
    return row.get("kv_bytes_allocated", row.get("kv_bytes_after_prefill", row.get("kv_bytes")))


def kv_label(ours):
    measured = all("kv_bytes_allocated" in row for row in ours["rows"])
    return "KV MiB (allocated)" if measured else "KV MiB (kept tokens, counted)"


def torch_case(method):
    """`SparseVLM v1.5 (64)` -> `sparsevlm-v1.5 64`; `FastV (K=2, 64)` -> `fastv 64`; `dense` -> `dense`."""
    if method == "dense":
        return "dense"
    m = re.match(r"SparseVLM (v[\d.]+) \((\d+)\)", method)
    if m:
        return f"sparsevlm-{m.group(1)} {m.group(2)}"
    m = re.match(r"FastV \(K=\d+, (\d+)\)", method)
    if m:
        return f"fastv {m.group(1)}"
    return None


def floor_ms(tflops, card):
    rate, bandwidth = next((v for k, v in CARDS.items() if k in card), CARDS["H100"])
    return 1e3 * max(tflops * 1e12 / rate, WEIGHT_BYTES / bandwidth)


def tables(results):
    load = lambda name: json.load(open(os.path.join(results, name)))
    ours, torch = load("ours.json"), load("torch.json")
    candle = load("ours-candle.json") if os.path.exists(os.path.join(results, "ours-candle.json")) else None
    card = open(os.path.join(results, "gpu.txt")).read().strip()
    ref = {(r["case"], r["batch"]): r for r in torch["results"]}
    dense_eager = ref[("dense", 1)]["eager_ms"]["median"]
    lines = [
        f"Card: {card}. PyTorch {torch['torch']}, same run. Prompt: {ours['prompt_tokens']} tokens "
        f"(576 visual), {ours['layers']} layers, bf16, random weights. Milliseconds, median of the runs "
        "(min-max for ours).",
        "",
        f"| case | floor | ours prefill | selection | ours decode / token | {kv_label(ours)} | PyTorch eager "
        "| PyTorch + CUDA graph "
        "| PyTorch decode (graph) | ours vs PyTorch eager dense |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ours["rows"]:
        case = torch_case(row["method"])
        t = ref.get((case, 1))
        p = row["prefill_ms"]
        cells = [
            row["method"],
            f"{floor_ms(row['prefill_tflops'], card):.1f}",
            f"{p['median']:.1f} ({p['min']:.1f}-{p['max']:.1f})",
            f"{row['selection_ms']['median']:.2f} ({row['selection_percent']:.1f} %)",
            f"{row['decode_ms_per_token']['median']:.2f}",
            f"{kv_bytes(row) / 2**20:.0f}",
            f"{t['eager_ms']['median']:.1f}" if t else "-",
            f"{t['graph_ms']['median']:.1f}" if t else "-",
            f"{t['decode_graph_ms']['median']:.2f}" if t else "-",
            f"{dense_eager / p['median']:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Batch 8 (PyTorch only: our engine runs one sequence at a time so far):",
        "",
        "| case | PyTorch eager | PyTorch + CUDA graph | speed-up over dense (graph) | decode / step (graph) |",
        "|---|---|---|---|---|",
    ]
    dense8 = ref.get(("dense", 8))
    for (case, batch), t in ref.items():
        if batch != 8:
            continue
        speedup = dense8["graph_ms"]["median"] / t["graph_ms"]["median"] if dense8 else float("nan")
        lines.append(
            f"| {case} | {t['eager_ms']['median']:.1f} | {t['graph_ms']['median']:.1f} | {speedup:.2f}x "
            f"| {t['decode_graph_ms']['median']:.2f} |"
        )
    if candle:
        lines += [
            "",
            "What our CUDA kernels bring (same binary, `--kernels candle` switches to plain candle ops:",
            "eager attention with a score matrix, unfused selection):",
            "",
            "| case | candle ops prefill | selection | decode | our kernels prefill | selection | decode |",
            "|---|---|---|---|---|---|---|",
        ]
        mine = {r["method"]: r for r in ours["rows"]}
        for row in candle["rows"]:
            m = mine.get(row["method"])
            if not m:
                continue
            lines.append(
                f"| {row['method']} | {row['prefill_ms']['median']:.1f} | {row['selection_percent']:.1f} % "
                f"| {row['decode_ms_per_token']['median']:.2f} | {m['prefill_ms']['median']:.1f} "
                f"| {m['selection_percent']:.1f} % | {m['decode_ms_per_token']['median']:.2f} |"
            )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--update")
    args = ap.parse_args()
    text = tables(args.results)
    if not args.update:
        print(text)
        return
    doc = open(args.update).read()
    start, end = "<!-- cuda-bench:start -->", "<!-- cuda-bench:end -->"
    if start not in doc or end not in doc:
        raise SystemExit(f"{args.update} has no {start} ... {end} section")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    open(args.update, "w").write(f"{head}{start}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()
