"""The rooflines of a benchmark run, so a tokens/s figure can be read as a fraction of a limit:

- compute: this machine's sustained fp32 GEMM rate over each model's FLOPs per token;
- weight reads: this machine's rate of streaming a weight matrix through a one-row product
  over the bytes of LSTM weights each token's steps must read. Every LSTM step reads the
  recurrent and projection weights of both directions and all layers (160 MB for the
  Original model) whatever its number of rows, so at batch 1 this is the tighter limit.

    python bench/roofline.py [--threads 2]      # prints the measured rates

The rate is measured on the matrix shapes of the Original model's LSTM and highway layers,
with NumPy's BLAS and with torch's oneDNN linear kernel (the two the inference path can
use, see ``spacy_elmo/bilm/cpu_matmul.py``); the roofline takes the best sustained rate.
FLOPs count multiply and add separately and every token through the whole token encoder,
as the reference implementations compute it (the word cache and the padding the character
CNN skips make spacy_elmo do less than that).
"""

from __future__ import annotations

import argparse
import itertools
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


# (K, N) of the weights one LSTM step streams at batch 1: the Original's recurrent product and
# its cell projection (32 MB and 8 MB in float32), beyond any cache.
BANDWIDTH_SHAPES = [(512, 16384), (4096, 512)]
STREAM_BYTES = 256 * 2**20


def measure_weight_bandwidth(threads: int) -> dict[str, Any]:
    """GB/s of weight read by a one-row product ``x (1, K) @ W (K, N)``, per library and shape on
    ``threads`` threads (NumPy's BLAS, torch's MKL), and the best of all."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rates: dict[str, dict[str, float]] = {"numpy": {}, "torch": {}}
    with threadpool_limits(threads, user_api="blas"):
        for k, n in BANDWIDTH_SHAPES:
            x = rng.standard_normal((1, k), dtype=np.float32)
            # Copies enough to stream 256 MB round-robin, as the LSTM's steps do: more than any cache.
            copies = [rng.standard_normal((k, n), dtype=np.float32) for _ in range(-(-STREAM_BYTES // (4 * k * n)))]
            out = np.empty((1, n), np.float32)
            label = f"1x{k}x{n}"
            bytes_per_flop = 4.0 * k * n / (2.0 * k * n)  # _rate's GFLOP/s times this is GB/s
            numpy_copies = itertools.cycle(copies)
            numpy_rate = _rate(lambda x=x, out=out, ws=numpy_copies: np.matmul(x, next(ws), out=out), 1, k, n)
            rates["numpy"][label] = numpy_rate * bytes_per_flop
            tx, torch_copies = torch.from_numpy(x), itertools.cycle([torch.from_numpy(w) for w in copies])
            torch_rate = _rate(lambda tx=tx, ws=torch_copies: torch.mm(tx, next(ws)), 1, k, n)
            rates["torch"][label] = torch_rate * bytes_per_flop
    best = max(rate for library in rates.values() for rate in library.values())
    return {"threads": threads, "gbytes_per_s": rates, "best_gbytes_per_s": best}


def lstm_steps(lengths: list[int], batch_size: int) -> int:
    """Steps the LSTM takes over sentences of ``lengths`` batched by length (the fewest any
    batching of ``batch_size`` takes), ``<S>`` and ``</S>`` included."""
    ordered = sorted(lengths, reverse=True)
    return sum(ordered[start] + 2 for start in range(0, len(ordered), batch_size))


def weight_bytes_per_token(options: dict[str, Any], lengths: list[int], batch_size: int) -> float:
    """Bytes of float32 LSTM weights read per real token: every step reads each direction's and
    layer's recurrent weight ``(P, 4C)`` and projection ``(C, P)``; the input weights (read once
    per chunk of steps) and the token encoder's are left out."""
    lstm = options["lstm"]
    P, C = lstm["projection_dim"], lstm["dim"]
    per_step = 2 * lstm["n_layers"] * 4.0 * (P * 4 * C + C * P)
    return per_step * lstm_steps(lengths, batch_size) / max(1, sum(lengths))


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
    print(
        json.dumps({"sgemm": measure_sgemm(args.threads), "weights": measure_weight_bandwidth(args.threads)}, indent=2)
    )


if __name__ == "__main__":
    main()
