"""Train one system with `spacy train` for each seed, evaluate it on the test split, record cost.

For each seed N this writes
  training/<system>/seed<N>/model-best/   the pipeline with the best dev score (model-last is deleted)
  training/<system>/seed<N>/log.jsonl     the training log, one JSON object per evaluation (configs with paths.log)
  training/<system>/seed<N>/train.log     what `spacy train` printed
  metrics/<system>/seed<N>.json           `spacy evaluate` output on the test split (scores and words/s)
  metrics/<system>/seed<N>.run.json       wall-clock and CPU seconds of training, model size, the exact commands
A seed whose files exist from the same commands is skipped, so adding a seed reruns only that seed.

Usage: python scripts/train_eval.py SYSTEM CONFIG CORPUS_DIR --seeds "0 1 2" [-- spacy-train overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from spacy.util import load_config


def directory_bytes(path: Path) -> int:
    """Total size of the files under `path`."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def child_cpu_seconds() -> float:
    """User + system CPU seconds used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def run(command: list[str], transcript: Path | None = None) -> None:
    """Run `command`, echoing its output and, if given, copying it to `transcript`."""
    print("$ " + " ".join(command), flush=True)
    if transcript is None:
        subprocess.run(command, check=True)
        return
    with transcript.open("w", encoding="utf8") as copy:
        environment = os.environ | {"PYTHONUNBUFFERED": "1"}  # line by line into the transcript
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            copy.write(line)
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, command)


def has_log_path(config: Path) -> bool:
    """Whether the config declares paths.log (our configs feed it to ConsoleLogger.v3's JSONL output_file)."""
    return "log" in load_config(config, interpolate=False).get("paths", {})


def write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf8")
    os.replace(tmp, path)


def train_and_evaluate(
    system: str, config: Path, corpus: Path, seed: int, overrides: list[str], training_root: Path, metrics_root: Path
) -> None:
    run_dir = training_root / system / f"seed{seed}"
    metrics_path = metrics_root / system / f"seed{seed}.json"
    run_path = metrics_root / system / f"seed{seed}.run.json"
    log_args = ["--paths.log", str(run_dir / "log.jsonl")] if has_log_path(config) else []
    train_command = [
        sys.executable, "-m", "spacy", "train", str(config), "--output", str(run_dir),
        "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
        *log_args, "--system.seed", str(seed), *overrides,
    ]  # fmt: skip
    evaluate_command = [
        sys.executable, "-m", "spacy", "evaluate", str(run_dir / "model-best"), str(corpus / "test.spacy"),
        "--output", str(metrics_path),
    ]  # fmt: skip
    recorded = {"train_command": train_command[1:], "evaluate_command": evaluate_command[1:]}
    if metrics_path.exists() and run_path.exists():
        previous = json.loads(run_path.read_text(encoding="utf8"))
        if {key: previous.get(key) for key in recorded} == recorded:
            print(f"{system} seed {seed}: up to date ({metrics_path})")
            return
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)

    cpu_before, wall_before = child_cpu_seconds(), time.perf_counter()
    run(train_command, transcript=run_dir / "train.log")
    train_seconds, train_cpu_seconds = time.perf_counter() - wall_before, child_cpu_seconds() - cpu_before
    shutil.rmtree(run_dir / "model-last", ignore_errors=True)
    run(evaluate_command)
    log_path = run_dir / "log.jsonl"
    last_step = 0
    if log_path.exists():
        lines = [line for line in log_path.read_text(encoding="utf8").splitlines() if line.strip()]
        if lines:
            last_step = int(json.loads(lines[-1]).get("step", 0))
    write_json(
        run_path,
        {
            "system": system,
            "seed": seed,
            "train_seconds": round(train_seconds, 1),
            "train_cpu_seconds": round(train_cpu_seconds, 1),
            "train_steps": last_step,
            "model_bytes": directory_bytes(run_dir / "model-best"),
            "log": str(log_path),
            "machine": {"platform": platform.platform(), "cpu_model": cpu_model(), "cpus": os.cpu_count()},
            **recorded,
        },
    )
    print(f"{system} seed {seed}: trained in {train_seconds:.0f}s, metrics in {metrics_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", help="name of the system, e.g. ner_tok2vec")
    parser.add_argument("config", type=Path)
    parser.add_argument("corpus", type=Path, help="directory with train.spacy, dev.spacy, test.spacy")
    parser.add_argument("--seeds", default="0", help='space-separated seeds, e.g. "0 1 2"')
    parser.add_argument("--training-dir", type=Path, default=Path("training"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    argv = sys.argv[1:]
    split_at = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split_at])
    overrides = argv[split_at + 1 :]  # everything after -- goes to spacy train, e.g. --training.max_steps 2000
    for seed in (int(value) for value in args.seeds.split()):
        train_and_evaluate(args.system, args.config, args.corpus, seed, overrides, args.training_dir, args.metrics_dir)


if __name__ == "__main__":
    main()
