"""The compute roofline of a benchmark run: this machine's sustained fp32 GEMM rate and each
model's FLOPs per token, so a tokens/s figure can be read as a fraction of the limit.

    python bench/roofline.py [--threads 2]      # prints the measured rates and rooflines

The rate is measured on the matrix shapes of the Original model's LSTM and highway layers,
with NumPy's BLAS and with torch's oneDNN linear kernel (the two the inference path can
use, see ``spacy_elmo/bilm/cpu_matmul.py``); the roofline takes the best sustained rate.
FLOPs count multiply and add separately and every token through the whole token encoder,
as the reference implementations compute it (the word cache and the padding the character
CNN skips make spacy_elmo do less than that).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

# (M, K, N): the input-gate product of a 4-step chunk at batch 32, the recurrent product at
# batch 32, the cell projection, and a highway layer over 512 tokens (Original model).
SHAPES = [(128, 512, 16384), (32, 512, 16384), (32, 4096, 512), (512, 2048, 2048)]


def _rate(multiply: Any, m: int, k: int, n: int, seconds: float = 0.4) -> float:
    """Best GFLOP/s of ``multiply()`` (an ``(m, k) @ (k, n)`` product) over a few timed rounds."""
    multiply()
    flops = 2.0 * m * k * n
    repeats = 1
    while True:  # enough repeats for about seconds / 4 per round
        start = time.perf_counter()
        for _ in range(repeats):
            multiply()
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 4:
            break
        repeats *= 2
    best = elapsed / repeats
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            multiply()
        best = min(best, (time.perf_counter() - start) / repeats)
    return flops / best / 1e9


def measure_sgemm(threads: int) -> dict[str, Any]:
    """GFLOP/s per library and shape on ``threads`` threads, and the best of all."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rates: dict[str, dict[str, float]] = {"numpy": {}, "onednn": {}}
    with threadpool_limits(threads, user_api="blas"):
        for m, k, n in SHAPES:
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            out = np.empty((m, n), np.float32)
            label = f"{m}x{k}x{n}"
            rates["numpy"][label] = _rate(lambda a=a, b=b, out=out: np.matmul(a, b, out=out), m, k, n)
            if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
                ta, tw = torch.from_numpy(a), torch.from_numpy(np.ascontiguousarray(b.T))
                rates["onednn"][label] = _rate(
                    lambda ta=ta, tw=tw: torch.ops.mkldnn._linear_pointwise(ta, tw, None, "none", [], ""), m, k, n
                )
    best = max(rate for library in rates.values() for rate in library.values())
    return {"threads": threads, "gflops": rates, "best_gflops": best}


def flops_per_token(options: dict[str, Any], n_tokens: int, n_sentences: int) -> dict[str, float]:
    """FLOPs of one real token: every token through the token encoder (CNN over all character
    positions, highway layers, projection) and the LSTM's positions, ``<S>`` and ``</S>`` included."""
    cnn, lstm = options["char_cnn"], options["lstm"]
    chars, dim = cnn["max_characters_per_token"], cnn["embedding"]["dim"]
    n_filters = sum(n for _, n in cnn["filters"])
    encoder = sum(2.0 * width * dim * n * (chars - width + 1) for width, n in cnn["filters"])
    encoder += cnn["n_highway"] * 2 * 2.0 * n_filters * n_filters
    P, C = lstm["projection_dim"], lstm["dim"]
    if n_filters != P:
        encoder += 2.0 * n_filters * P
    per_position = 2 * lstm["n_layers"] * 2.0 * (P * 4 * C + P * 4 * C + C * P)  # both directions
    lstm_per_token = per_position * (n_tokens + 2 * n_sentences) / max(1, n_tokens)
    return {"encoder": encoder, "lstm": lstm_per_token, "total": encoder + lstm_per_token}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure_sgemm(args.threads), indent=2))


if __name__ == "__main__":
    main()
