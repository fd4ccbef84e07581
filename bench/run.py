"""Inference benchmark: spacy_elmo against AllenNLP's ELMo on the same weights, text and CPU.

    python bench/run.py                       # every model, batch 1 and 32, reset and stateful
    python bench/run.py --quick --models original --batch-sizes 32
    python bench/run.py --allennlp-python /tmp/allennlp-venv/bin/python   # side by side

Random-weight models in the exact reference layout (``options.json`` + HDF5, written with
``spacy_elmo.bilm.weights``) are built once under ``--model-dir`` for the Small, Medium and
Original configurations. Each (model, batch size, state mode) runs in fresh worker
processes (``bench/worker.py``), one per implementation, so load time and peak RSS are
measured per configuration. With ``--allennlp-python``, both workers stay up and take turns
run by run (who goes first alternates), so load from other processes hits both alike.
Before the runs it measures this machine's sustained fp32 GEMM rate (``bench/roofline.py``:
NumPy's BLAS and oneDNN on the LSTM's shapes, with ``--threads`` threads) and reports each
row's tokens/s as a fraction of the model's compute roofline (that rate over the model's
FLOPs per token). Writes ``<out>/bench-<time>.json`` and ``.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roofline import flops_per_token, measure_sgemm, measure_weight_bandwidth, weight_bytes_per_token

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
# name: (lstm dim C, projection dim P, highway layers), as the official models (elmo-format.md §15)
MODELS = {"small": (1024, 128, 1), "medium": (2048, 256, 1), "original": (4096, 512, 2)}
# Sentences per timed run: (full, --quick), by batch size 1 and otherwise.
SENTENCES = {"batch1": (16, 4), "batched": (128, 32)}


def model_options(name: str) -> dict[str, Any]:
    cell_dim, projection_dim, n_highway = MODELS[name]
    return {
        "lstm": {
            "use_skip_connections": True,
            "projection_dim": projection_dim,
            "cell_clip": 3,
            "proj_clip": 3,
            "dim": cell_dim,
            "n_layers": 2,
        },
        "char_cnn": {
            "activation": "relu",
            "filters": FILTERS,
            "n_highway": n_highway,
            "embedding": {"dim": 16},
            "n_characters": 262,
            "max_characters_per_token": 50,
        },
    }


def build_model(name: str, model_dir: Path) -> tuple[Path, Path]:
    """Write a random-weight model (seeded) unless one with the same options is there."""
    directory = model_dir / name
    options_file, weight_file = directory / "options.json", directory / "weights.hdf5"
    wanted = model_options(name)
    if options_file.is_file() and weight_file.is_file():
        existing = json.loads(options_file.read_text())
        if existing.get("lstm") == wanted["lstm"] and existing.get("char_cnn") == wanted["char_cnn"]:
            return options_file, weight_file
    import torch

    from spacy_elmo.bilm import ElmoBiLM, ElmoOptions, save_bilm

    torch.manual_seed(0)
    model = ElmoBiLM(ElmoOptions.from_dict(wanted, source=name))
    print(f"building random {name} model ({sum(p.numel() for p in model.parameters()):,} parameters)", flush=True)
    return save_bilm(model, directory)


def pick_sentences(all_sentences: list[str], count: int) -> list[str]:
    """``count`` sentences spread evenly over the file (it runs through several eras)."""
    if count >= len(all_sentences):
        return all_sentences
    step = len(all_sentences) / count
    return [all_sentences[int(i * step)] for i in range(count)]


@dataclass
class Worker:
    impl: str
    process: subprocess.Popen[str]
    info: dict[str, Any]

    def request(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return read_reply(self)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)


def read_reply(worker: Worker) -> dict[str, Any]:
    assert worker.process.stdout is not None
    line = worker.process.stdout.readline()
    if not line:
        worker.process.wait()
        raise RuntimeError(f"{worker.impl} worker exited with code {worker.process.returncode}")
    return json.loads(line)


def start_worker(impl: str, python: str, args: list[str]) -> Worker:
    env = dict(os.environ)
    if impl == "ours":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [python, str(BENCH_DIR / "worker.py"), "--impl", impl, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    worker = Worker(impl, process, {})
    worker.info = read_reply(worker)
    return worker


def summarize(seconds: list[float], n_tokens: int) -> dict[str, float]:
    rates = [n_tokens / s for s in seconds]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def run_configuration(
    model: str, files: tuple[Path, Path], sentences_file: Path, batch_size: int, state: str, args: argparse.Namespace
) -> dict[str, Any]:
    worker_args = [
        "--options", str(files[0]), "--weights", str(files[1]), "--sentences", str(sentences_file),
        "--state", state, "--batch-size", str(batch_size), "--threads", str(args.threads),
    ]  # fmt: skip
    impls = [("ours", sys.executable)]
    if args.allennlp_python:
        impls.append(("allennlp", args.allennlp_python))
    workers = []
    try:
        for impl, python in impls:  # loaded one after the other: load time is measured alone
            workers.append(start_worker(impl, python, worker_args))
        times: dict[str, list[float]] = {w.impl: [] for w in workers}
        peaks: dict[str, float] = {}
        for run in range(args.warmup + args.runs):
            turn = workers if run % 2 == 0 else workers[::-1]
            for worker in turn:
                reply = worker.request("run")
                if run >= args.warmup:
                    times[worker.impl].append(reply["seconds"])
                peaks[worker.impl] = reply["peak_rss_mb"]
    finally:
        for worker in workers:
            worker.close()
    n_tokens = workers[0].info["n_tokens"]
    result: dict[str, Any] = {
        "model": model,
        "batch_size": batch_size,
        "state": state,
        "n_sentences": workers[0].info["n_sentences"],
        "n_tokens": n_tokens,
    }
    for worker in workers:
        result[worker.impl] = {
            **worker.info,
            "seconds": times[worker.impl],
            "tokens_per_s": summarize(times[worker.impl], n_tokens),
            # VmHWM restarted after loading: the peak while embedding (weights included)
            "peak_rss_inference_mb": peaks[worker.impl],
        }
    if "allennlp" in result:
        result["speedup"] = result["ours"]["tokens_per_s"]["median"] / result["allennlp"]["tokens_per_s"]["median"]
    options = json.loads(files[0].read_text())
    flops = flops_per_token(options, n_tokens, result["n_sentences"])
    result["flops_per_token"] = flops
    lengths = [len(line.split()) for line in sentences_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    result["weight_bytes_per_token"] = weight_bytes_per_token(options, lengths, batch_size)
    result["compute_roofline_tokens_per_s"] = args.sgemm["best_gflops"] * 1e9 / flops["total"]
    result["memory_roofline_tokens_per_s"] = (
        args.bandwidth["best_gbytes_per_s"] * 1e9 / result["weight_bytes_per_token"]
    )
    result["roofline_tokens_per_s"] = min(
        result["compute_roofline_tokens_per_s"], result["memory_roofline_tokens_per_s"]
    )
    for worker in workers:
        result[worker.impl]["roofline_fraction"] = (
            result[worker.impl]["tokens_per_s"]["median"] / result["roofline_tokens_per_s"]
        )
    return result


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), cpu)
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
        cpu += " (" + " ".join(f for f in flags if f.startswith(("avx", "amx", "fma"))) + ")"
    except (OSError, subprocess.CalledProcessError, IndexError):
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def rate(stats: dict[str, float]) -> str:
    return f"{stats['median']:.0f} ({stats['min']:.0f}-{stats['max']:.0f})"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    sgemm = report["sgemm"]
    bandwidth = report["bandwidth"]
    reads = ", ".join(
        f"{shape} {bandwidth['gbytes_per_s']['numpy'][shape]:.0f} / {bandwidth['gbytes_per_s']['torch'][shape]:.0f}"
        for shape in bandwidth["gbytes_per_s"]["numpy"]
    )
    rates = sgemm["gflops"]
    shapes = ", ".join(
        f"{shape} {rates['numpy'][shape]:.0f} / {rates['onednn'].get(shape, 0):.0f}" for shape in rates["numpy"]
    )
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {report['threads']} torch threads; Python {m['python']}, "
        f"torch {m['torch']}. Load average {report['load_before']} before, {report['load_after']} after. "
        f"Runs: {report['runs']} timed after {report['warmup']} warm-up; tokens/s as median (min-max).",
        "",
        f"Sustained fp32 GEMM on {sgemm['threads']} threads, GFLOP/s NumPy BLAS / oneDNN (M x K x N): {shapes}; "
        f"the compute roofline uses the best, {sgemm['best_gflops']:.0f} GFLOP/s.",
        "",
        f"Weight reads through a one-row product on {bandwidth['threads']} threads, GB/s NumPy BLAS / torch "
        f"(1 x K x N): {reads}; the memory roofline uses the best, {bandwidth['best_gbytes_per_s']:.0f} GB/s.",
        "",
        "| model | batch | state | tokens/s spacy_elmo | tokens/s AllenNLP | speedup "
        "| roofline tokens/s compute / memory | of roofline ours / AllenNLP | peak RSS MB ours / AllenNLP "
        "| load s ours / AllenNLP |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ours, theirs = r["ours"], r.get("allennlp")
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['state']} | {rate(ours['tokens_per_s'])} | "
            + (f"{rate(theirs['tokens_per_s'])} | {r['speedup']:.2f}x | " if theirs else "- | - | ")
            + f"{r['compute_roofline_tokens_per_s']:.0f} / {r['memory_roofline_tokens_per_s']:.0f} | "
            + f"{100 * ours['roofline_fraction']:.0f}% / "
            + (f"{100 * theirs['roofline_fraction']:.0f}%" if theirs else "-")
            + f" | {ours['peak_rss_inference_mb']:.0f} / "
            + (f"{theirs['peak_rss_inference_mb']:.0f}" if theirs else "-")
            + f" | {ours['load_s']:.2f} / "
            + (f"{theirs['load_s']:.2f} |" if theirs else "- |")
        )
    lines.append("")
    lines.append(
        "Rooflines: compute, the sustained GEMM rate over the model's FLOPs per token (every token through the "
        "whole token encoder, as the reference computes it; the LSTM's <S> and </S> positions included); memory, "
        "the weight-read rate over the LSTM weight bytes per token (every step reads each direction's and layer's "
        "recurrent and projection weights; sentences batched by length). 'Of roofline' is of the lower one."
    )
    lines.append(
        "Peak RSS is the process's high-water mark while embedding (restarted after loading; weights included); "
        f"{report['results'][0]['n_tokens'] if report['results'] else 0} tokens per timed run at the first row."
    )
    return "\n".join(lines) + "\n"


def check_allennlp(python: str) -> str | None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import worker; "
        "worker.stub_torchvision(); import allennlp.modules.elmo"
    )
    done = subprocess.run([python, "-c", code, str(BENCH_DIR)], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["unknown error"])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small,medium,original", help="comma-separated: small, medium, original")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--states", default="reset,stateful")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every worker")
    parser.add_argument("--quick", action="store_true", help="fewer sentences per run, for iterating")
    parser.add_argument("--sentences", type=Path, default=BENCH_DIR / "data" / "sentences.txt")
    parser.add_argument("--model-dir", type=Path, default=BENCH_DIR / "results" / "models")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--allennlp-python", help="a Python with allennlp 2.10.1 importable (bench/setup_allennlp.sh)")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.allennlp_python:
        problem = check_allennlp(args.allennlp_python)
        if problem:
            print(f"allennlp is not importable with {args.allennlp_python} ({problem}); running ours only", flush=True)
            args.allennlp_python = None
    else:
        print("no --allennlp-python given: running spacy_elmo only", flush=True)

    sys.path.insert(0, str(ROOT))
    all_sentences = [line for line in args.sentences.read_text(encoding="utf-8").splitlines() if line.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(f"measuring sustained sgemm on {args.threads} threads", flush=True)
    args.sgemm = measure_sgemm(args.threads)
    print(f"best {args.sgemm['best_gflops']:.0f} GFLOP/s", flush=True)
    args.bandwidth = measure_weight_bandwidth(args.threads)
    print(f"weight reads: best {args.bandwidth['best_gbytes_per_s']:.0f} GB/s", flush=True)
    report: dict[str, Any] = {
        "machine": machine(),
        "sgemm": args.sgemm,
        "bandwidth": args.bandwidth,
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "load_before": load_average(),
        "results": [],
    }
    for model in models:
        files = build_model(model, args.model_dir)
        for batch_size in [int(b) for b in args.batch_sizes.split(",") if b]:
            count = SENTENCES["batch1" if batch_size == 1 else "batched"][1 if args.quick else 0]
            sentences_file = args.out / f"sentences-{count}.txt"
            sentences_file.write_text("\n".join(pick_sentences(all_sentences, count)) + "\n", encoding="utf-8")
            for state in [s for s in args.states.split(",") if s]:
                result = run_configuration(model, files, sentences_file, batch_size, state, args)
                report["results"].append(result)
                ours = result["ours"]
                line = (
                    f"{model} batch {batch_size} {state}: ours {rate(ours['tokens_per_s'])} tok/s "
                    f"({100 * ours['roofline_fraction']:.0f}% of roofline)"
                )
                if "allennlp" in result:
                    line += f", allennlp {rate(result['allennlp']['tokens_per_s'])} tok/s, {result['speedup']:.2f}x"
                print(line, flush=True)
                report["load_after"] = load_average()
                write_report(report, args.out / f"bench-{stamp}")  # after each configuration
    print(markdown(report))


def write_report(report: dict[str, Any], stem: Path) -> None:
    for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", markdown(report))):
        tmp = stem.with_name(stem.name + suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(stem.with_name(stem.name + suffix))


if __name__ == "__main__":
    main()
