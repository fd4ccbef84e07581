"""One benchmark subject in its own process: loads a model, then times runs on request.

Started by ``bench/run.py`` (never imported by it), so each configuration's peak memory is
its own. It speaks a line protocol on stdin/stdout: after loading it prints one JSON line
(load time, RSS); then each ``run`` line makes it embed all sentences once and print a
JSON line with the seconds taken; ``quit`` ends it. Only the standard library, numpy and
torch are imported here besides the implementation under test, so the same file runs
under AllenNLP's separate interpreter.

``--impl ours`` uses ``spacy_elmo.load_bilm(...).embed_sentences``; ``--impl allennlp``
uses ``allennlp.modules.elmo.Elmo`` (eval, no_grad, one output representation, no
dropout) on ``batch_to_ids`` of the same batches, in input order, and resets its LSTM
state before each batch in reset mode.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path


def rss_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process from ``/proc``, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Restart ``VmHWM`` from the current RSS (Linux ``clear_refs``); false where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def ours(options: Path, weights: Path, state: str, batch_size: int) -> tuple[Callable[[list[list[str]]], None], str]:
    from spacy_elmo import load_bilm

    model = load_bilm(options, weights, state=state)

    def embed(sentences: list[list[str]]) -> None:
        # Every timed run starts cold: no word vectors cached from the previous run.
        model.clear_caches()
        model.embed_sentences(sentences, batch_size=batch_size)

    return embed, "spacy_elmo"


def stub_torchvision() -> None:
    """AllenNLP's package ``__init__`` imports torchvision for its vision modules, which ELMo never
    calls; PyPI only has CUDA builds of torchvision, which fail to load beside a CPU torch."""
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in ("torchvision", "torchvision.ops", "torchvision.ops.boxes"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]  # type: ignore[attr-defined]
        sys.modules["torchvision.ops"].boxes = sys.modules["torchvision.ops.boxes"]  # type: ignore[attr-defined]


def allennlp(
    options: Path, weights: Path, state: str, batch_size: int
) -> tuple[Callable[[list[list[str]]], None], str]:
    import torch

    stub_torchvision()
    import allennlp as allennlp_package
    from allennlp.modules.elmo import Elmo, batch_to_ids

    elmo = Elmo(str(options), str(weights), num_output_representations=1, dropout=0.0, requires_grad=False).eval()
    lstm = elmo._elmo_lstm._elmo_lstm

    def embed(sentences: list[list[str]]) -> None:
        with torch.no_grad():
            for start in range(0, len(sentences), batch_size):
                if state == "reset":
                    lstm.reset_states()
                batch = sentences[start : start + batch_size]
                output = elmo(batch_to_ids(batch))
                output["elmo_representations"][0].numpy()

    from allennlp.version import VERSION

    return embed, f"allennlp {getattr(allennlp_package, '__version__', VERSION)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", choices=("ours", "allennlp"), required=True)
    parser.add_argument("--options", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--sentences", type=Path, required=True, help="one tokenized sentence per line")
    parser.add_argument("--state", choices=("reset", "stateful"), required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sentences = [line.split() for line in args.sentences.read_text(encoding="utf-8").splitlines() if line.strip()]
    build = ours if args.impl == "ours" else allennlp
    rss_before = rss_mb("VmRSS")
    start = time.perf_counter()
    embed, version = build(args.options, args.weights, args.state, args.batch_size)
    load_s = time.perf_counter() - start
    report = {
        "load_s": load_s,
        "version": version,
        "torch": torch.__version__,
        "rss_before_load_mb": rss_before,
        "rss_after_load_mb": rss_mb("VmRSS"),
        "peak_rss_load_mb": rss_mb("VmHWM"),
        "n_sentences": len(sentences),
        "n_tokens": sum(len(s) for s in sentences),
    }
    report["peak_reset"] = reset_peak_rss()
    print(json.dumps(report), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        start = time.perf_counter()
        embed(sentences)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb("VmHWM")}), flush=True)


if __name__ == "__main__":
    main()
