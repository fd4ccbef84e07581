"""Collect test-split metrics for every system and seed into a markdown table, JSON and PNG plots.

Reads metrics/<system>/seed<N>.json (`spacy evaluate` output), metrics/<system>/seed<N>.run.json (training cost,
written by train_eval.py) and training/<system>/seed<N>/log.jsonl (dev scores during training). Writes
  reports/results.md     one table per task: score, P, R, words/s, training time, model size; mean ± std over seeds
  reports/results.json   the same numbers, per seed and aggregated
  reports/scores.png     test score per system (error bars: std over seeds)
  reports/learning_curves.png   dev score against training step, mean over seeds
and, with --doc FILE, replaces the block between the RESULTS markers in FILE with the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

TASKS = {
    "ner": ("NER, WNUT-16 Twitter (test split)", "entity F1"),
    "textcat_bbc": ("Text classification, BBC News topics (test split)", "accuracy"),
    "textcat_movies": ("Text classification, movie-review sentence polarity (test split)", "accuracy"),
}
SYSTEMS = {
    "tok2vec": "spaCy tok2vec, no vectors",
    "glove": "tok2vec + GloVe 6B 50d",
    "elmo": "ELMo frozen alone (configs/*.cfg)",
    "elmo_frozen": "ELMo frozen + tok2vec",
    "elmo_glove": "ELMo frozen + tok2vec + GloVe",
    "elmo_frozen_v2": "ELMo frozen + tok2vec, en_elmo_small_v2 (0.2's default, 12.5M tokens)",
    "elmo_glove_v2": "ELMo frozen + tok2vec + GloVe, en_elmo_small_v2 (0.2's default, 12.5M tokens)",
    "elmo_frozen_v3": "ELMo frozen + tok2vec, en_elmo_small_v3 (0.3's default, 20.0M tokens)",
    "elmo_glove_v3": "ELMo frozen + tok2vec + GloVe, en_elmo_small_v3 (0.3's default, 20.0M tokens)",
    "elmo_frozen_v4": "ELMo frozen + tok2vec, en_elmo_small_v4 (the default, 37.1M tokens)",
    "elmo_glove_v4": "ELMo frozen + tok2vec + GloVe, en_elmo_small_v4 (the default, 37.1M tokens)",
    "elmo_adapted": "ELMo LM-adapted to the task's text, frozen + tok2vec + GloVe",
    "elmo_finetune": "ELMo fine-tuned + tok2vec",
    "elmo_official": "official ELMo frozen + tok2vec",
}
START, END = "<!-- RESULTS START (scripts/report.py) -->", "<!-- RESULTS END -->"


@dataclass
class SeedResult:
    seed: int
    score: float  # entity F1 for NER, accuracy for text classification; in [0, 1]
    f1: float
    precision: float
    recall: float
    words_per_second: float
    train_seconds: float | None
    train_cpu_seconds: float | None
    model_bytes: int | None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, dev score)


@dataclass
class SystemResult:
    task: str
    system: str
    seeds: list[SeedResult]


def split_system(name: str) -> tuple[str, str] | None:
    """('ner', 'elmo_frozen') from 'ner_elmo_frozen'; None for directories that are not a known task."""
    for task in sorted(TASKS, key=len, reverse=True):
        if name.startswith(task + "_") and name[len(task) + 1 :] in SYSTEMS:
            return task, name[len(task) + 1 :]
    return None


def read_curve(log_path: Path) -> list[tuple[int, float]]:
    """(step, dev score) pairs from a ConsoleLogger.v3 JSONL log; [] if there is none."""
    if not log_path.exists():
        return []
    curve = []
    for line in log_path.read_text(encoding="utf8").splitlines():
        if line.strip():
            entry = json.loads(line)
            curve.append((int(entry["step"]), float(entry["score"])))
    return curve


def read_seed(task: str, metrics_path: Path, training_dir: Path) -> SeedResult:
    scores = json.loads(metrics_path.read_text(encoding="utf8"))
    seed = int(re.fullmatch(r"seed(\d+)\.json", metrics_path.name)[1])  # type: ignore[index]
    run_path = metrics_path.with_name(f"seed{seed}.run.json")
    run = json.loads(run_path.read_text(encoding="utf8")) if run_path.exists() else {}
    if task == "ner":
        f1, precision, recall = scores["ents_f"], scores["ents_p"], scores["ents_r"]
        score = f1
    else:  # exclusive classes: micro F1 equals accuracy; P/R/F are macro averages over labels
        f1, precision, recall = scores["cats_macro_f"], scores["cats_macro_p"], scores["cats_macro_r"]
        score = scores["cats_micro_f"]
    return SeedResult(
        seed=seed,
        score=score,
        f1=f1,
        precision=precision,
        recall=recall,
        words_per_second=scores["speed"],
        train_seconds=run.get("train_seconds"),
        train_cpu_seconds=run.get("train_cpu_seconds"),
        model_bytes=run.get("model_bytes"),
        curve=read_curve(training_dir / metrics_path.parent.name / f"seed{seed}" / "log.jsonl"),
    )


def collect(metrics_dir: Path, training_dir: Path) -> list[SystemResult]:
    results = []
    for system_dir in sorted(path for path in metrics_dir.iterdir() if path.is_dir()):
        parsed = split_system(system_dir.name)
        seed_files = sorted(system_dir.glob("seed*.json"))
        seed_files = [path for path in seed_files if re.fullmatch(r"seed\d+\.json", path.name)]
        if parsed and seed_files:
            task, system = parsed
            results.append(SystemResult(task, system, [read_seed(task, path, training_dir) for path in seed_files]))
    order = {name: index for index, name in enumerate(SYSTEMS)}
    return sorted(results, key=lambda r: (list(TASKS).index(r.task), order[r.system]))


def merge_previous(results: list[SystemResult], previous_path: Path) -> list[SystemResult]:
    """Add the seeds recorded in an earlier ``results.json`` that ``metrics/`` does not hold (it wins where both do)."""
    by_key = {(r.task, r.system): r for r in results}
    for entry in json.loads(previous_path.read_text(encoding="utf8")):
        key = (entry["task"], entry["system"])
        if key[0] not in TASKS or key[1] not in SYSTEMS:
            continue
        result = by_key.setdefault(key, SystemResult(*key, []))
        have = {seed.seed for seed in result.seeds}
        for seed in entry["seeds"]:
            if seed["seed"] not in have:
                curve = [(int(step), float(score)) for step, score in seed.pop("curve", [])]
                result.seeds.append(SeedResult(**seed, curve=curve))
        result.seeds.sort(key=lambda seed: seed.seed)
    order = {name: index for index, name in enumerate(SYSTEMS)}
    return sorted(by_key.values(), key=lambda r: (list(TASKS).index(r.task), order[r.system]))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_pm(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean, std = mean_std([value * scale for value in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def markdown_tables(results: list[SystemResult]) -> str:
    lines: list[str] = []
    for task, (title, _) in TASKS.items():
        rows = [result for result in results if result.task == task]
        if not rows:
            continue
        score_columns = ["F1", "P", "R"] if task == "ner" else ["accuracy", "macro F1", "macro P", "macro R"]
        columns = ["system", *score_columns, "words/s", "train time (s)", "train CPU (s)", "model (MB)", "seeds"]
        lines += [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for result in rows:
            seeds = result.seeds
            train = [s.train_seconds for s in seeds if s.train_seconds is not None]
            cpu = [s.train_cpu_seconds for s in seeds if s.train_cpu_seconds is not None]
            size = [s.model_bytes for s in seeds if s.model_bytes is not None]
            scores = [format_pm([s.precision for s in seeds]), format_pm([s.recall for s in seeds])]
            if task == "ner":
                scores.insert(0, format_pm([s.f1 for s in seeds]))
            else:
                scores[:0] = [format_pm([s.score for s in seeds]), format_pm([s.f1 for s in seeds])]
            cells = [
                SYSTEMS[result.system],
                *scores,
                format_pm([s.words_per_second for s in seeds], scale=1.0, digits=0),
                format_pm(train, scale=1.0, digits=0) if train else "n/a",
                format_pm(cpu, scale=1.0, digits=0) if cpu else "n/a",
                f"{statistics.fmean(size) / 1e6:.1f}" if size else "n/a",
                str(len(seeds)),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def target_lines(results: list[SystemResult]) -> list[str]:
    """The project's targets checked against the measured means (only where the systems have results)."""
    means = {(r.task, r.system): mean_std([s.score * 100 for s in r.seeds])[0] for r in results}
    lines = []
    # the NER targets are for ELMo frozen: the first bundled model's systems and the current default's (issue #14)
    for system in ("elmo_frozen", "elmo_glove", "elmo_adapted", "elmo_frozen_v4", "elmo_glove_v4"):
        name = SYSTEMS[system]
        if ("ner", system) in means and ("ner", "tok2vec") in means:
            gain = means["ner", system] - means["ner", "tok2vec"]
            verdict = "met" if gain >= 3 else "missed"
            lines.append(f"- NER: {name} − tok2vec = {gain:+.1f} F1 (target ≥ +3.0): {verdict}")
        if ("ner", system) in means and ("ner", "glove") in means:
            gain = means["ner", system] - means["ner", "glove"]
            lines.append(f"- NER: {name} − GloVe = {gain:+.1f} F1 (target > 0): {'met' if gain > 0 else 'missed'}")
    for task in ("textcat_bbc", "textcat_movies"):
        best_elmo = max((v for (t, s), v in means.items() if t == task and s.startswith("elmo")), default=None)
        baselines = [means[task, s] for s in ("tok2vec", "glove") if (task, s) in means]
        if best_elmo is not None and baselines:
            gain = best_elmo - max(baselines)
            verdict = "met" if gain > 0 else "missed"
            lines.append(f"- {task}: best ELMo − best baseline = {gain:+.1f} accuracy (target > 0): {verdict}")
    return lines


def plot(results: list[SystemResult], output_dir: Path) -> list[Path]:
    """scores.png and learning_curves.png; [] if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -e '.[project]')")
        return []
    tasks = [task for task in TASKS if any(r.task == task for r in results)]
    written = []
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        rows = [r for r in results if r.task == task]
        stats = [mean_std([s.score * 100 for s in r.seeds]) for r in rows]
        axis.bar(range(len(rows)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=4, color="tab:blue")
        axis.set_xticks(range(len(rows)), [r.system for r in rows], rotation=30, ha="right")
        low = min(m for m, _ in stats)
        axis.set_ylim(max(0.0, low - 10), min(100.0, max(m + s for m, s in stats) + 3))
        axis.set_title(TASKS[task][0].split(" (")[0], fontsize=9)
        axis.set_ylabel(f"test {TASKS[task][1]} (%)")
    figure.tight_layout()
    written.append(output_dir / "scores.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for result in (r for r in results if r.task == task):
            curves = [dict(s.curve) for s in result.seeds if s.curve]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            axis.plot(steps, [100 * statistics.fmean(c[step] for c in curves) for step in steps], label=result.system)
        axis.set_title(TASKS[task][0].split(" (")[0], fontsize=9)
        axis.set_xlabel("training step")
        axis.set_ylabel("dev score (%)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    written.append(output_dir / "learning_curves.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)
    return written


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf8")
    os.replace(tmp, path)


def machine_line(metrics_dir: Path) -> str:
    for run_path in sorted(metrics_dir.glob("*/seed*.run.json")):
        machine = json.loads(run_path.read_text(encoding="utf8")).get("machine", {})
        if machine:
            cpu = machine.get("cpu_model") or machine.get("processor") or "unknown CPU"
            return f"Machine: {machine.get('cpus')} CPUs ({cpu}), {machine.get('platform')}."
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("training_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--doc", type=Path, help="markdown file whose RESULTS block is replaced by the tables")
    parser.add_argument(
        "--previous",
        type=Path,
        help="an earlier results.json: its seeds that metrics_dir lacks are kept (runs made on another checkout)",
    )
    args = parser.parse_args()

    results = collect(args.metrics_dir, args.training_dir) if args.metrics_dir.exists() else []
    if args.previous is not None and args.previous.exists():
        results = merge_previous(results, args.previous)
    if not results:
        raise SystemExit(f"no results under {args.metrics_dir}/<task>_<system>/seed<N>.json: run a training command")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    tables = markdown_tables(results)
    targets = target_lines(results)
    notes = [
        "Scores in %, mean ± sample std over seeds (one number: one seed). Text classification: accuracy, and",
        "macro-averaged F1/P/R over labels. words/s: `spacy evaluate` on the test split. Training time: wall clock",
        "and CPU seconds of `spacy train` (wall clock is indicative only on a shared machine). Model: model-best",
        "on disk.",
    ]
    machine = machine_line(args.metrics_dir)
    body = tables + "\n" + " ".join(notes) + (f" {machine}" if machine else "") + "\n"
    if targets:
        body += "\nTargets:\n\n" + "\n".join(targets) + "\n"
    write_text(args.output_dir / "results.md", "# Results\n\n" + body)
    summary = [
        {"task": r.task, "system": r.system, "seeds": [s.__dict__ | {"curve": s.curve} for s in r.seeds]}
        for r in results
    ]
    write_text(args.output_dir / "results.json", json.dumps(summary, indent=1) + "\n")
    plots = plot(results, args.output_dir)
    if args.doc:
        text = args.doc.read_text(encoding="utf8")
        if START not in text or END not in text:
            raise SystemExit(f"{args.doc}: no block between {START!r} and {END!r} to replace")
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        images = "".join(f"![{p.stem}]({Path(os.path.relpath(p, args.doc.parent)).as_posix()})\n" for p in plots)
        write_text(args.doc, before + START + "\n" + body + ("\n" + images if images else "") + END + after)
    print(tables)
    print("\n".join(targets))
    print(f"wrote {args.output_dir}/results.md, results.json" + "".join(f", {p.name}" for p in plots))


if __name__ == "__main__":
    main()
