"""Peak memory of the ``elmo`` component on one long Doc, by ``doc_layers`` setting.

    python bench/long_doc_memory.py                          # Original, 50,000 tokens, "all" then "mix"
    python bench/long_doc_memory.py --model small --tokens 20000

Each setting runs in a fresh process (``--worker``): load the pipeline (a random-weight model in the
reference layout, built by ``bench/run.py``'s ``build_model``), then run ``nlp`` on one Doc of
``--tokens`` words (no sentence boundaries, so the component windows it) and keep the Doc. Reported:
``ru_maxrss`` (the process's peak, loading included), the RSS after loading, the inference peak
(``VmHWM`` restarted after loading via ``/proc/self/clear_refs``), the RSS while the Doc is held, and
the bytes of ``doc._.elmo`` and ``doc.tensor``. One run per setting: memory does not vary run to run
the way time does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(ROOT)]

from run import build_model  # noqa: E402  (bench/run.py)
from worker import reset_peak_rss, rss_mb  # noqa: E402  (bench/worker.py)


def words(n_tokens: int) -> list[str]:
    """``n_tokens`` tokens of the benchmark text, repeated as needed."""
    tokens = (BENCH_DIR / "data" / "sentences.txt").read_text(encoding="utf-8").split()
    return [tokens[i % len(tokens)] for i in range(n_tokens)]


def worker(weights: Path, doc_layers: str, n_tokens: int) -> dict[str, object]:
    import numpy as np
    import spacy
    import torch
    from spacy.tokens import Doc

    import spacy_elmo  # noqa: F401  (registers the factory)

    torch.set_num_threads(1)
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"weights": str(weights), "doc_layers": doc_layers})
    nlp.initialize()
    doc = Doc(nlp.vocab, words=words(n_tokens))
    rss_loaded = rss_mb("VmRSS")
    reset = reset_peak_rss()
    started = time.perf_counter()
    doc = nlp(doc)
    seconds = time.perf_counter() - started
    stored = {key: int(value.nbytes) for key, value in doc._.elmo.items() if isinstance(value, np.ndarray)}
    return {
        "doc_layers": doc_layers,
        "tokens": len(doc),
        "seconds": round(seconds, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_load_mb": round(rss_loaded, 1),
        "inference_peak_mb": round(rss_mb("VmHWM"), 1) if reset else None,
        "rss_holding_doc_mb": round(rss_mb("VmRSS"), 1),
        "doc_elmo_mb": {key: round(size / 1e6, 1) for key, size in stored.items()},
        "tensor_mb": round(doc.tensor.nbytes / 1e6, 1),
        "tensor_is_stored_vectors": doc._.elmo.get("vectors") is doc.tensor,
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="original", choices=("small", "medium", "original"))
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--doc-layers", default="all,mix", help="comma-separated settings to measure")
    parser.add_argument("--model-dir", default=str(BENCH_DIR / "results" / "models"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    weights = Path(args.model_dir) / args.model
    if args.worker is not None:
        print(json.dumps(worker(weights, args.worker, args.tokens)))
        return
    build_model(args.model, Path(args.model_dir))
    print(f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; model {args.model}", flush=True)
    for setting in args.doc_layers.split(","):
        command = [sys.executable, __file__, "--worker", setting, "--model", args.model, "--tokens", str(args.tokens)]
        command += ["--model-dir", args.model_dir]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"worker for doc_layers={setting} failed:\n{result.stderr[-3000:]}")
        print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
