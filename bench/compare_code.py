"""This checkout's spacy_elmo against another checkout's (e.g. a worktree of ``main``), side by side.

    git worktree add --detach /tmp/spacy-elmo-main main
    python bench/compare_code.py /tmp/spacy-elmo-main --model original --batch-size 32

Both run ``bench/worker.py --impl ours`` (each from its own checkout, with its own code on
``PYTHONPATH``) on the same model files and sentences as ``bench/run.py --quick``, taking
turns run by run (who goes first alternates), so load from other processes hits both alike:
on a shared machine the ratio is the steadier number. Prints one line: medians (min-max)
of tokens/s, the ratio, both peak RSS values and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from run import BENCH_DIR, ROOT, SENTENCES, build_model, pick_sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="root of the other checkout")
    parser.add_argument("--model", default="original", choices=("small", "medium", "original"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=BENCH_DIR / "results" / "models")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    options, weights = build_model(args.model, args.model_dir)
    count = SENTENCES["batch1" if args.batch_size == 1 else "batched"][1]
    lines = [line for line in (BENCH_DIR / "data" / "sentences.txt").read_text(encoding="utf-8").splitlines() if line]
    sentences = args.model_dir / f"compare-sentences-{count}.txt"
    sentences.write_text("\n".join(pick_sentences(lines, count)) + "\n", encoding="utf-8")
    worker_args = [
        "--impl", "ours", "--options", str(options), "--weights", str(weights), "--sentences", str(sentences),
        "--state", "reset", "--batch-size", str(args.batch_size), "--threads", str(args.threads),
    ]  # fmt: skip
    workers = {}
    for name, root in (("this", ROOT), ("other", args.other.resolve())):
        env = dict(os.environ, PYTHONPATH=str(root))
        command = [sys.executable, str(root / "bench" / "worker.py"), *worker_args]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout is not None
        workers[name] = (process, json.loads(process.stdout.readline()))
    n_tokens = workers["this"][1]["n_tokens"]
    rates: dict[str, list[float]] = {name: [] for name in workers}
    peaks: dict[str, float] = {}
    try:
        for run in range(args.runs + 1):  # the first is a warm-up
            for name in list(workers) if run % 2 == 0 else list(workers)[::-1]:
                process = workers[name][0]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write("run\n")
                process.stdin.flush()
                reply = json.loads(process.stdout.readline())
                if run:
                    rates[name].append(n_tokens / reply["seconds"])
                peaks[name] = reply["peak_rss_mb"]
    finally:
        for process, _ in workers.values():
            if process.poll() is None and process.stdin is not None:
                process.stdin.write("quit\n")
                process.stdin.flush()
                process.wait(timeout=60)
    median = {name: statistics.median(values) for name, values in rates.items()}
    ranges = {name: f"{min(values):.0f}-{max(values):.0f}" for name, values in rates.items()}
    print(
        f"{args.model} batch {args.batch_size}, {args.threads} threads: this {median['this']:.0f} ({ranges['this']}) "
        f"tokens/s, other {median['other']:.0f} ({ranges['other']}), ratio {median['this'] / median['other']:.2f}x; "
        f"peak RSS MB this {peaks['this']:.0f}, other {peaks['other']:.0f}; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
