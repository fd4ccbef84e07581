"""Speed and accuracy cost of the faster CPU inference modes (``ElmoBiLM.precision``).

    python bench/precision.py                    # Small, Medium, Original; batch 32; fp32, bf16, int8
    python bench/precision.py --models original --batch-size 1 --quick

For each model (the random-weight reference-layout models of ``bench/run.py``) the same
sentences are embedded at each precision, in one process, taking turns run by run; tokens/s
is the median of the timed runs (word-vector cache cleared before each). The accuracy cost
is measured against fp32 on every real token of every layer: the largest absolute
difference, the mean relative error ``|x - x_fp32| / |x_fp32|`` (per token vector), and the
mean cosine similarity of the token vectors. Writes ``<out>/precision-<time>.json`` and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

from run import MODELS, SENTENCES, build_model, machine, pick_sentences  # noqa: E402

from spacy_elmo.bilm.cpu_matmul import PRECISIONS  # noqa: E402


def accuracy(approx: list[np.ndarray], exact: list[np.ndarray]) -> dict[str, float]:
    """Differences of per-sentence ``(layers, n, 2P)`` arrays from the fp32 ones, over all token vectors."""
    a = np.concatenate([x.reshape(-1, x.shape[-1]) for x in approx])
    e = np.concatenate([x.reshape(-1, x.shape[-1]) for x in exact])
    norms = np.linalg.norm(e, axis=1)
    keep = norms > 0
    relative = np.linalg.norm(a - e, axis=1)[keep] / norms[keep]
    cosine = (a * e).sum(1)[keep] / (np.linalg.norm(a, axis=1)[keep] * norms[keep])
    return {
        "max_abs_diff": float(np.abs(a - e).max()),
        "mean_relative_error": float(relative.mean()),
        "mean_cosine": float(cosine.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small,medium,original")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32 is always included")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="32 sentences (4 at batch 1) instead of 128 (16)")
    parser.add_argument("--sentences", type=Path, default=BENCH_DIR / "data" / "sentences.txt")
    parser.add_argument("--model-dir", type=Path, default=BENCH_DIR / "results" / "models")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args()

    import torch

    from spacy_elmo import load_bilm

    torch.set_num_threads(args.threads)
    lines = [line for line in args.sentences.read_text(encoding="utf-8").splitlines() if line.strip()]
    count = SENTENCES["batch1" if args.batch_size == 1 else "batched"][1 if args.quick else 0]
    sentences = [line.split() for line in pick_sentences(lines, count)]
    n_tokens = sum(len(s) for s in sentences)
    report: dict[str, Any] = {"machine": machine(), "threads": args.threads, "batch_size": args.batch_size}
    report["results"] = []
    precisions = ["fp32", *(p for p in args.precisions.split(",") if p and p != "fp32")]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"unknown precision(s) {unknown}; choose from {PRECISIONS}")
    for name in [m for m in args.models.split(",") if m]:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {sorted(MODELS)}")
        model = load_bilm(*build_model(name, args.model_dir))
        outputs: dict[str, list[np.ndarray]] = {}
        seconds: dict[str, list[float]] = {p: [] for p in precisions}
        for run in range(args.runs + 1):  # run 0 warms up (and converts the weights once)
            for precision in precisions:
                model.precision = precision  # clears the word-vector cache
                start = time.perf_counter()
                result = model.embed_sentences(sentences, batch_size=args.batch_size)
                if run > 0:
                    seconds[precision].append(time.perf_counter() - start)
                outputs[precision] = result
        for precision in precisions:
            row = {
                "model": name,
                "precision": precision,
                "tokens_per_s": n_tokens / statistics.median(seconds[precision]),
                **accuracy(outputs[precision], outputs["fp32"]),
            }
            report["results"].append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"precision-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nbatch {args.batch_size}, {n_tokens} tokens per run, {args.threads} threads; {path}\n")
    print("| model | precision | tokens/s | speedup | max abs diff | mean relative error | mean cosine |")
    print("|---|---|---|---|---|---|---|")
    base = {r["model"]: r["tokens_per_s"] for r in report["results"] if r["precision"] == "fp32"}
    for r in report["results"]:
        speedup = r["tokens_per_s"] / base[r["model"]]
        print(
            f"| {r['model']} | {r['precision']} | {r['tokens_per_s']:.0f} | {speedup:.2f}x "
            f"| {r['max_abs_diff']:.2g} | {r['mean_relative_error']:.2g} | {r['mean_cosine']:.5f} |"
        )


if __name__ == "__main__":
    main()
