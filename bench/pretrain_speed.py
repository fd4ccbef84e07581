"""Pretraining throughput: tokens/s per direction of N training steps of a preset on fixed text.

    python bench/pretrain_speed.py                          # this checkout, mini preset, bench/data text
    python bench/pretrain_speed.py --baseline /work/wt/base # A/B against another checkout, taking turns

Each measurement is a fresh worker process (``--worker``) with ``PYTHONPATH`` set to its checkout:
it tokenizes the text (whitespace tokens, as shipped in ``bench/data/sentences.txt``), builds the
preset's language model with the pretraining code's own ``build_model``, and runs the training step of
``spacy_elmo.pretrain.train`` (reset states, forward, backward of ``loss * unroll_steps``, gradient
clipping, Adagrad) for ``--warmup`` untimed then ``--steps`` timed steps. With ``--baseline`` the two
checkouts alternate (A B A B ..., who goes first alternating per round) and the median ratio is printed.
Where a checkout has ``train.training_step``, that is the step timed (the training loop's own); older
checkouts run their loop's step as written there.

    python bench/pretrain_speed.py --baseline OTHER --gradients   # same weights and batch: loss, gradients

``--gradients`` instead runs one forward and backward pass in each checkout from the same initial weights on
the same first batch, and prints both losses and the largest relative difference of a parameter's gradient
(``--precision``/``--baseline-precision`` compare float32 with bfloat16 the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_TEXT = HERE / "data" / "sentences.txt"


def cpu_description() -> str:
    """The CPU model and whether it has AVX-512, AVX512-BF16 and AMX (Linux ``/proc/cpuinfo``)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return f"{model}, {os.cpu_count()} CPUs, flags: " + " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` training steps of this process's ``spacy_elmo``; returns the measurement."""
    import torch
    from torch import nn

    from spacy_elmo.pretrain import train as train_module
    from spacy_elmo.pretrain.data import LMBatcher, SentenceStream, SentenceTokenizer, Vocabulary, tokenize_corpus
    from spacy_elmo.pretrain.presets import get_preset, override_training

    try:  # the allocator settings of the pretrain command, where this checkout has them
        from spacy_elmo.pretrain.allocator import keep_freed_memory
    except ImportError:
        pass
    else:
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    overrides: dict[str, Any] = {"batch_size": args.batch_size}
    settings = override_training(preset.training, overrides)
    with tempfile.TemporaryDirectory() as directory:
        corpus = tokenize_corpus(args.text, directory, SentenceTokenizer("en", "whitespace"))
        vocab = Vocabulary.from_counts(corpus.counts, settings.max_vocab_size, settings.min_count)
        model, _ = train_module.build_model(preset.options, settings, len(vocab), seed=0, init_from=None)
        try:
            from spacy_elmo.pretrain.precision import training_precision
        except ImportError:  # a checkout from before --precision: float32 only
            if args.precision != "float32":
                raise SystemExit(f"{Path(train_module.__file__).parents[2]}: no --precision support") from None
            training_precision = None
        if hasattr(train_module, "build_optimizer"):
            optimizer = train_module.build_optimizer(model, settings)
        else:  # a checkout from before build_optimizer: the plain Adagrad
            optimizer = torch.optim.Adagrad(
                model.parameters(), lr=settings.learning_rate, initial_accumulator_value=settings.initial_accumulator
            )
        if hasattr(model, "sparse_softmax_gradient"):  # as train.py sets it for one process
            model.sparse_softmax_gradient = True
        model.sampler = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        batchers = [
            LMBatcher(
                SentenceStream(corpus.shards, direction),
                vocab,
                settings.batch_size,
                settings.unroll_steps,
                reverse=direction == 1,
                reset_probability=settings.state_reset_probability,
            )
            for direction in (0, 1)
        ]
        states = model.zero_states(settings.batch_size)
        model.train()
        parameters = [p for p in model.parameters() if p.requires_grad]
        losses: list[float] = []

        def step() -> None:
            nonlocal states
            batches = (next(batchers[0]), next(batchers[1]))
            if hasattr(train_module, "training_step"):
                output = train_module.training_step(
                    model, optimizer, parameters, batches, states, settings, args.precision
                )
            else:  # a checkout from before training_step: its training loop's step, as it was written there
                states = train_module.reset_states(states, *batches)
                output = forward_pass(model, batches, states, args.precision, training_precision)
                (output.loss * settings.unroll_steps).backward()
                nn.utils.clip_grad_norm_(parameters, settings.clip_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            states = output.states
            losses.append(float(output.loss.detach()))

        if args.gradients_to is not None:
            return save_first_step_gradients(model, batchers, states, settings, args, training_precision)
        for _ in range(args.warmup):
            step()
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            shapes = bool(os.environ.get("PROFILE_SHAPES"))
            stack = bool(os.environ.get("PROFILE_STACK"))
            with profile(activities=[ProfilerActivity.CPU], with_stack=stack, record_shapes=shapes) as prof:
                for _ in range(args.steps):
                    step()
            group = int(os.environ.get("PROFILE_STACK", "0"))
            averages = prof.key_averages(group_by_stack_n=group, group_by_input_shape=shapes)
            rows = int(os.environ.get("PROFILE_ROWS", "30"))
            table = averages.table(sort_by="self_cpu_time_total", row_limit=rows)
            print(table, file=sys.stderr)
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = time.perf_counter() - started
    tokens = args.steps * settings.batch_size * settings.unroll_steps
    return {
        "tokens_per_s": tokens / seconds,
        "seconds_per_step": seconds / args.steps,
        "last_loss": losses[-1],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def forward_pass(model: Any, batches: tuple[Any, Any], states: list[Any], precision: str, context: Any) -> Any:
    """The model's output on both batches, under the checkout's ``training_precision`` where it has one."""
    if context is None:
        return model(*batches, states)
    with context(precision):
        return model(*batches, states)


def save_first_step_gradients(
    model: Any, batchers: list[Any], states: list[Any], settings: Any, args: argparse.Namespace, precision: Any
) -> dict[str, Any]:
    """Loss and gradients (of ``loss * unroll_steps``, before clipping) of the first batch, to ``.npz``."""
    import numpy as np

    batches = (next(batchers[0]), next(batchers[1]))
    output = forward_pass(model, batches, states, args.precision, precision)
    (output.loss * settings.unroll_steps).backward()
    losses = (output.loss, output.forward_loss, output.backward_loss)
    arrays = {"loss": np.array([float(loss.detach()) for loss in losses])}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            grad = parameter.grad.to_dense() if parameter.grad.is_sparse else parameter.grad
            arrays[f"grad/{name}"] = grad.detach().numpy()
    np.savez(args.gradients_to, **arrays)
    return {"saved": str(args.gradients_to)}


def compare_gradients(this: Path, baseline: Path, args: argparse.Namespace, common: list[str]) -> None:
    """Both checkouts' first-step loss and gradients on the same batch, from the same initial weights."""
    import numpy as np

    with tempfile.TemporaryDirectory() as directory:
        saved = {}
        for name, checkout, precision in (
            ("this", this, args.precision),
            ("baseline", baseline, args.baseline_precision),
        ):
            path = Path(directory) / f"{name}.npz"
            args.worker_argv = [*common, f"--precision={precision}", f"--gradients-to={path}"]
            measure(checkout, args)
            with np.load(path) as arrays:
                saved[name] = {key: arrays[key] for key in arrays.files}
    this_arrays, base_arrays = saved["this"], saved["baseline"]
    for label, k in (("loss", 0), ("forward loss", 1), ("backward loss", 2)):
        a, b = this_arrays["loss"][k], base_arrays["loss"][k]
        print(f"{label}: this {a:.7f}, baseline {b:.7f}, difference {abs(a - b):.2e}")
    if this_arrays.keys() != base_arrays.keys():
        raise SystemExit(f"the checkouts' parameters differ: {sorted(this_arrays.keys() ^ base_arrays.keys())}")
    worst = ("", 0.0)
    for key in sorted(k for k in this_arrays if k.startswith("grad/")):
        difference = float(np.linalg.norm(this_arrays[key] - base_arrays[key]))
        relative = difference / max(float(np.linalg.norm(base_arrays[key])), 1e-30)
        if relative >= worst[1]:
            worst = (key[len("grad/") :], relative)
    n_grads = sum(k.startswith("grad/") for k in this_arrays)
    print(
        f"gradients of {n_grads} parameters: largest relative difference |this - baseline| / |baseline| "
        f"{worst[1]:.2e} ({worst[0]})"
    )


def measure(checkout: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One worker process on ``checkout``'s ``spacy_elmo``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *args.worker_argv]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=checkout)
    if done.returncode != 0:
        raise SystemExit(f"worker on {checkout} failed:\n{done.stderr[-4000:]}")
    if args.profile:
        print(done.stderr, file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="tokenized text, one sentence a line")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare against")
    parser.add_argument("--baseline-precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds with --baseline")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table of the timed steps")
    parser.add_argument(
        "--gradients",
        action="store_true",
        help="with --baseline: compare the first step's loss and gradients instead of timing (same batch and weights)",
    )
    parser.add_argument("--gradients-to", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gradients and args.baseline is None:
        parser.error("--gradients compares two checkouts: pass --baseline")
    if args.batch_size is None:
        sys.path.insert(0, str(HERE.parent))
        from spacy_elmo.pretrain.presets import get_preset

        args.batch_size = get_preset(args.preset).training.batch_size
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    import torch

    common = [
        f"--text={args.text.resolve()}",
        f"--preset={args.preset}",
        f"--batch-size={args.batch_size}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--threads={args.threads}",
    ] + (["--profile"] if args.profile else [])
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, threads {args.threads}, preset {args.preset}, batch {args.batch_size}")
    print(f"text {args.text}, {args.warmup} warm-up + {args.steps} timed steps per measurement")
    this = HERE.parent
    if args.baseline is None:
        args.worker_argv = [*common, f"--precision={args.precision}"]
        result = measure(this, args)
        print(f"this checkout ({args.precision}): {result['tokens_per_s']:.0f} tokens/s per direction")
        return 0
    if args.gradients:
        compare_gradients(this, args.baseline, args, common)
        return 0
    ratios: list[float] = []
    for round_index in range(args.rounds):
        order = [("this", this, args.precision), ("baseline", args.baseline, args.baseline_precision)]
        if round_index % 2:
            order.reverse()
        results = {}
        for name, checkout, precision in order:
            args.worker_argv = [*common, f"--precision={precision}"]
            results[name] = measure(checkout, args)
        ratio = results["this"]["tokens_per_s"] / results["baseline"]["tokens_per_s"]
        ratios.append(ratio)
        print(
            f"round {round_index + 1}: this ({args.precision}) {results['this']['tokens_per_s']:.0f}, "
            f"baseline ({args.baseline_precision}) {results['baseline']['tokens_per_s']:.0f} tokens/s per "
            f"direction; ratio {ratio:.2f}",
            flush=True,
        )
    print(f"median ratio this / baseline: {statistics.median(ratios):.2f} over {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
