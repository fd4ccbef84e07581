"""Matrix products of the no-grad inference path, through the fastest CPU kernel at hand.

Three backends, chosen by ``SPACY_ELMO_MATMUL`` or ``set_matmul_backend``:

- ``onednn`` (the default where the CPU has AVX-512 and torch has oneDNN): torch's oneDNN
  linear kernel. On the 2-core AMD EPYC (Zen 5, AVX-512) of bench/RESULTS.md it multiplies
  ELMo's shapes about twice as fast as NumPy's OpenBLAS, whose kernels there are AVX2 ones:
  the recurrent ``(32, 512) @ (512, 16384)`` of the Original model at 140 vs 86 GFLOP/s on
  one core, ``(128, 512) @ (512, 16384)`` at 196 vs 103. It wants the weight as
  ``(out, in)`` row-major, which is why the models' ``(in, out)`` weights are stored as
  transposed views of ``(out, in)`` tensors (``transposed_parameter``). A bias or a
  ``(M, N)`` addend is fused into the product.
- ``numpy`` (the default elsewhere): NumPy's BLAS on the tensors' own memory (no copies); on
  an AVX2 EPYC it ran the shapes 1.5 to 4.7 times faster than torch's MKL.
- ``torch``: ``torch.mm``.

Only CPU float32 tensors take the first two; anything else (GPU, bf16, autograd) goes
through torch. Separately, ``SPACY_ELMO_LSTM_LAYOUT`` (``auto``, ``rows``, ``columns``; see
``lstm_uses_columns``) chooses how the LSTM's steps multiply: ``(rows, in) @ (in, out)`` through the
backend, or ``weight (out, in) @ columns (in, rows)`` through torch's MKL (``weight_product``).
Results equal ``torch.mm``'s up to float rounding. NumPy's BLAS and oneDNN
keep as many threads as torch has (``torch.set_num_threads``). Inside ``blas_owns_threads``
torch's own elementwise work runs on one thread: its idle OpenMP threads spin for a while
after each parallel operation and, interleaved with BLAS calls step after step, halved the
LSTM's speed.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import torch

BACKENDS = ("onednn", "numpy", "torch")


def onednn_available() -> bool:
    """Whether torch's oneDNN linear kernel is there and the CPU has AVX-512 (where it was
    measured faster than NumPy's BLAS; on AVX2 CPUs NumPy stays the default)."""
    return (
        torch.backends.mkldnn.is_available()
        and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def default_backend() -> str:
    """``onednn`` where ``onednn_available()``, else ``numpy``."""
    return "onednn" if onednn_available() else "numpy"


def _backend_from_environment() -> str:
    name = os.environ.get("SPACY_ELMO_MATMUL", "auto")
    if name == "auto":
        return default_backend()
    if name not in BACKENDS:
        raise ValueError(f"SPACY_ELMO_MATMUL must be 'auto' or one of {BACKENDS}, found {name!r}")
    if name == "onednn" and not onednn_available():
        raise ValueError("SPACY_ELMO_MATMUL=onednn, but torch has no oneDNN linear kernel or the CPU no AVX-512")
    return name


_backend = _backend_from_environment()
LSTM_LAYOUTS = ("auto", "rows", "columns")


def _lstm_layout_from_environment() -> str:
    name = os.environ.get("SPACY_ELMO_LSTM_LAYOUT", "auto")
    if name not in LSTM_LAYOUTS:
        raise ValueError(f"SPACY_ELMO_LSTM_LAYOUT must be one of {LSTM_LAYOUTS}, found {name!r}")
    return name


_lstm_layout = _lstm_layout_from_environment()
_blas_threads: int | None = None
_owned_threads: int | None = None  # torch's thread count while blas_owns_threads is active
_single_blas = False  # inside single_threaded_blas
PRECISIONS = ("fp32", "bf16", "int8")
_precision = "fp32"
# id(weight) -> (weakref to the weight, (its version, precision), converted weight)
_low_precision_weights: dict[int, tuple[weakref.ref[torch.Tensor], tuple[int, str], Any]] = {}


def set_matmul_backend(name: str) -> str:
    """Select ``onednn``, ``numpy`` or ``torch`` for the inference path's CPU products; returns the
    previous one."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"matmul backend must be one of {BACKENDS}, found {name!r}")
    if name == "onednn" and not onednn_available():
        raise ValueError("the onednn backend needs torch with oneDNN and a CPU with AVX-512")
    previous, _backend = _backend, name
    return previous


def matmul_backend() -> str:
    return _backend


def set_lstm_layout(name: str) -> str:
    """Select the LSTM inference layout, ``auto``, ``rows`` or ``columns`` (``lstm_uses_columns``);
    returns the previous one."""
    global _lstm_layout
    if name not in LSTM_LAYOUTS:
        raise ValueError(f"LSTM layout must be one of {LSTM_LAYOUTS}, found {name!r}")
    previous, _lstm_layout = _lstm_layout, name
    return previous


# Multiply-adds of one direction's step (rows x P x 4C) from which ``auto`` keeps the rows
# layout: there the rows layout's single-threaded products, one direction per thread, ran as
# fast as the column layout on an idle machine (Original, batch 32: 697 vs 692 tokens/s) and
# 2.6 times faster beside another two-threaded job (319 vs 121), whose load stalls each of
# the column layout's two-threaded products.
COLUMN_LAYOUT_MAX_WORK = 128_000_000


def lstm_uses_columns(*tensors: torch.Tensor, step_work: int = 0) -> bool:
    """Whether the LSTM's no-grad steps keep their state as columns and multiply with
    ``weight_product``: for CPU float32 tensors on the fast kernels at fp32 precision, where
    ``SPACY_ELMO_LSTM_LAYOUT`` (or ``set_lstm_layout``) says ``columns``, or says ``auto`` (the
    default), the CPU is an Intel one with the onednn backend (the CPU class it was measured
    faster on; elsewhere the rows layout, measured there, stays) and a step's ``step_work``
    is below ``COLUMN_LAYOUT_MAX_WORK``."""
    if _precision != "fp32" or not uses_fast_kernels(*tensors) or _lstm_layout == "rows":
        return False
    if _lstm_layout == "columns":
        return True
    return _backend == "onednn" and cpu_is_intel() and step_work < COLUMN_LAYOUT_MAX_WORK


@lru_cache(maxsize=1)
def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process."""
    from threadpoolctl import ThreadpoolController

    return list(ThreadpoolController().select(user_api="blas").lib_controllers)


def _match_blas_threads() -> None:
    """Give NumPy's BLAS torch's thread count, or one inside ``single_threaded_blas``
    (checked on every use: workers change torch's)."""
    global _blas_threads
    wanted = 1 if _single_blas else (_owned_threads or torch.get_num_threads())
    if wanted != _blas_threads:
        for library in _blas_libraries():
            library.set_num_threads(wanted)
        _blas_threads = wanted


def _forget_blas_threads_in_child() -> None:
    global _blas_threads
    _blas_threads = None  # set again on first use in a forked child


os.register_at_fork(after_in_child=_forget_blas_threads_in_child)


def threads_for_directions(*tensors: torch.Tensor) -> int:
    """Threads the LSTM's two directions may run in, inside ``blas_owns_threads``: 2 or 1."""
    if _owned_threads is None or _single_blas or not uses_fast_kernels(*tensors):
        return 1
    return min(2, _owned_threads)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """NumPy's BLAS and oneDNN on one thread in the block, for callers that run products in several threads."""
    global _single_blas
    previous, _single_blas = _single_blas, True
    # Set here, in the calling thread, before other threads start products: OpenBLAS's
    # thread count changed while another thread multiplies made results vary run to run.
    _match_blas_threads()
    try:
        yield
    finally:
        _single_blas = previous


@contextmanager
def blas_owns_threads(active: bool = True) -> Iterator[None]:
    """Run the block with torch on one thread and NumPy's BLAS on torch's threads.

    For no-grad CPU work whose time is in ``matmul_into`` calls between small torch
    operations. Nested use and ``active=False`` change nothing.
    """
    global _owned_threads
    if not active or _backend == "torch" or _owned_threads is not None:
        yield
        return
    threads = torch.get_num_threads()
    _owned_threads = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _owned_threads = None


def uses_numpy(*tensors: torch.Tensor) -> bool:
    """Whether products of these tensors go through NumPy (CPU float32, backend ``numpy``)."""
    return _backend == "numpy" and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def uses_fast_kernels(*tensors: torch.Tensor) -> bool:
    """Whether products of these tensors go through NumPy or oneDNN (CPU float32, not ``torch``)."""
    return _backend != "torch" and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def transposed_parameter(in_dim: int, out_dim: int) -> torch.nn.Parameter:
    """An uninitialised ``(in_dim, out_dim)`` weight stored as the transpose of a contiguous
    ``(out_dim, in_dim)`` tensor: the layout oneDNN multiplies fastest, with no copy. Shape,
    values, saving and loading are those of any ``(in, out)`` weight."""
    return torch.nn.Parameter(torch.empty(out_dim, in_dim).t())


def initialize_in_logical_order(parameter: torch.Tensor, initializer: Callable[[torch.Tensor], object]) -> None:
    """Run a random ``initializer`` on a contiguous tensor of ``parameter``'s shape and copy it in,
    so that a seed gives the same values whatever the parameter's memory layout."""
    values = torch.empty(parameter.shape, dtype=parameter.dtype, device=parameter.device)
    initializer(values)
    with torch.no_grad():
        parameter.copy_(values)


def _uses_onednn(a: torch.Tensor, b: torch.Tensor) -> bool:
    """oneDNN for CPU float32 ``a (M, K) @ b (K, N)`` with ``b`` stored transposed (``b.t()`` contiguous)."""
    return (
        _backend == "onednn"
        and a.device.type == "cpu"
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and b.device.type == "cpu"
        and b.t().is_contiguous()
    )


@contextmanager
def _product_threads() -> Iterator[None]:
    """torch (whose OpenMP threads oneDNN and MKL use) on the products' thread count for one call."""
    wanted = 1 if _single_blas else (_owned_threads or torch.get_num_threads())
    current = torch.get_num_threads()
    if wanted == current:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(current)


def _onednn_linear(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    with _product_threads():
        return torch.ops.mkldnn._linear_pointwise(a.detach(), b.detach().t(), bias, "none", [], "")


def _cpuinfo_field(name: str) -> str:
    """The first ``name : value`` of /proc/cpuinfo, or "" where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


@lru_cache(maxsize=1)
def cpu_is_intel() -> bool:
    """Whether the CPU is an Intel one (``GenuineIntel``), where torch's MKL products were measured."""
    return _cpuinfo_field("vendor_id") == "GenuineIntel"


def weight_product(
    weight_rows: torch.Tensor, columns: torch.Tensor, addend: torch.Tensor | None = None
) -> torch.Tensor:
    """``weight_rows @ columns (+ addend)`` for ``weight_rows (N, K)``, ``columns (K, M)`` (any
    strides) and ``addend`` broadcastable to ``(N, M)``: a new ``(N, M)`` tensor, without autograd,
    through torch's BLAS (MKL) on the products' thread count.

    The LSTM's column layout (``lstm.run_direction_inference_columns``) multiplies this way: on
    the Intel Sapphire Rapids of bench/RESULTS.md, ``(16384, 512) @ (512, 32)`` took 3.3 ms on one
    core where oneDNN's ``(32, 512) @ (512, 16384)`` took 4.5 ms, and 16 columns 2.5 vs 3.4 ms.
    """
    with _product_threads():
        if addend is None:
            return torch.mm(weight_rows.detach(), columns.detach())
        return torch.addmm(addend.detach(), weight_rows.detach(), columns.detach())


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); without it torch's bf16
    products ran 58 times slower than fp32 on an AVX2 EPYC (bench/RESULTS.md)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(check is not None for check in checks):
        return any(check() for check in checks)  # type: ignore[misc]
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def precision_problem(name: str) -> str | None:
    """Why precision ``name`` would be slow on this CPU, or None."""
    if name == "bf16" and not cpu_has_bf16():
        return (
            "precision 'bf16' needs a CPU with AVX512-BF16 or AMX, which this one lacks: its bf16 products "
            "fall back to a slow kernel (58x slower than fp32 on an AVX2 CPU); use 'int8' or 'fp32'"
        )
    return None


def check_precision(name: str) -> str:
    """``name`` if it is one of ``PRECISIONS``, else ``ValueError``."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, found {name!r}")
    return name


@contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """Products with a weight (``b``) in the block use ``name``: ``fp32`` (exact, the default),
    ``bf16`` (bfloat16 inputs and output) or ``int8`` (dynamic int8: weights quantized per
    output column once, activations per call; fbgemm). The faster modes change outputs
    (measured in bench/RESULTS.md)."""
    global _precision
    previous, _precision = _precision, check_precision(name)
    try:
        yield
    finally:
        _precision = previous


def _low_precision_weight(weight: torch.Tensor) -> Any:
    """``weight (K, N)`` in the current precision, made once per weight version."""
    cached = _low_precision_weights.get(id(weight))
    key = (weight._version, _precision)
    if cached is not None and cached[0]() is weight and cached[1] == key:
        return cached[2]
    w = weight.detach()
    if _precision == "bf16":
        converted: Any = w.to(torch.bfloat16)
    else:
        rows = w.t().contiguous()  # (N, K), as torch's quantized linear wants it
        scales = (rows.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
        zero = torch.zeros(rows.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            # torch 2.13 marks its quantized tensors deprecated (torchao replaces them); fbgemm's
            # dynamic int8 linear is still what runs fastest here, and this mode is opt-in.
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
            quantized = torch.quantize_per_channel(rows, scales, zero, 0, torch.qint8)
            converted = torch.ops.quantized.linear_prepack(quantized, None)
    ident = id(weight)
    ref = weakref.ref(weight, lambda _: _low_precision_weights.pop(ident, None))
    _low_precision_weights[ident] = (ref, key, converted)
    return converted


def matmul_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out = a @ b`` for ``a (M, K)``, ``b (K, N)`` and ``out (M, N)``, without autograd.

    ``out`` may be a view (a slice of a larger buffer): it is written in place. Inside
    ``matmul_precision("bf16" | "int8")``, ``b`` is taken to be a weight and converted once.
    """
    if _precision != "fp32" and a.device.type == "cpu" and a.dtype == torch.float32:
        weight = _low_precision_weight(b)
        if _precision == "bf16":
            out.copy_(torch.mm(a.to(torch.bfloat16), weight))
        else:
            out.copy_(torch.ops.quantized.linear_dynamic(a.contiguous(), weight, True))
        return out
    if _uses_onednn(a, b) and out.dtype == torch.float32:
        out.copy_(_onednn_linear(a, b, None))
    elif uses_numpy(out, a, b):
        _match_blas_threads()
        np.matmul(a.detach().numpy(), b.detach().numpy(), out=out.detach().numpy())
    else:
        torch.mm(a, b, out=out)
    return out


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``a (M, K)`` and ``b (K, N)``: a new ``(M, N)`` tensor, without autograd."""
    return matmul_into(a.new_empty(a.shape[0], b.shape[1]), a, b)


def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``bias + a @ b`` with ``bias (N,)``: a new ``(M, N)`` tensor, without autograd (oneDNN: fused)."""
    if _precision == "fp32" and _uses_onednn(a, b) and bias.dtype == torch.float32:
        return _onednn_linear(a, b, bias.detach())
    return matmul(a, b).add_(bias)


def matmul_add(a: torch.Tensor, b: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
    """``addend + a @ b`` for ``addend (M, N)``, without autograd. With oneDNN the sum is fused
    into the product and comes back as a new tensor; otherwise ``addend`` is updated in place
    and returned."""
    if _precision == "fp32" and _uses_onednn(a, b) and addend.dtype == torch.float32:
        with _product_threads():
            return torch.ops.mkldnn._linear_pointwise.binary(a.detach(), addend, b.detach().t(), None, "add")
    return addend.add_(matmul(a, b))
