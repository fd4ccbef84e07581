"""The inference path's matrix products: NumPy's BLAS against torch's, and the thread hand-over."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch

from spacy_elmo import load_bilm
from spacy_elmo.bilm import cpu_matmul
from spacy_elmo.bilm.chars import batch_to_char_ids
from spacy_elmo.errors import ElmoPerformanceWarning

from ..conftest import OPTIONS_FILE, WEIGHT_FILE


@pytest.fixture
def backend() -> Iterator[None]:
    previous = cpu_matmul.matmul_backend()
    yield
    cpu_matmul.set_matmul_backend(previous)


def test_numpy_products_equal_torch_products_including_views(backend: None) -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(7, 24, generator=generator)
    b = torch.randn(24, 40, generator=generator)
    buffer = torch.zeros(3, 7, 40)
    cpu_matmul.set_matmul_backend("numpy")
    assert cpu_matmul.uses_numpy(a, b)
    cpu_matmul.matmul_into(buffer[1], a[:, ::1], b)  # into a slice of a larger buffer
    strided = torch.randn(7, 48, generator=generator)[:, :24]  # rows with a stride, as the gate slices
    expected_strided = torch.mm(strided, b)
    got_strided = cpu_matmul.matmul(strided, b)
    assert torch.allclose(buffer[1], torch.mm(a, b), atol=1e-5, rtol=0)
    assert torch.count_nonzero(buffer[0]) == 0 and torch.count_nonzero(buffer[2]) == 0
    assert torch.allclose(got_strided, expected_strided, atol=1e-5, rtol=0)
    bias = torch.randn(40, generator=generator)
    assert torch.allclose(cpu_matmul.addmm(bias, a, b), torch.addmm(bias, a, b), atol=1e-5, rtol=0)


def test_non_float32_tensors_go_through_torch(backend: None) -> None:
    cpu_matmul.set_matmul_backend("numpy")
    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert not cpu_matmul.uses_numpy(a, b)
    assert torch.equal(cpu_matmul.matmul(a, b), torch.mm(a, b))


def test_unknown_backend_is_rejected(backend: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="matmul backend must be one of"):
        cpu_matmul.set_matmul_backend("mkl")
    monkeypatch.setattr(cpu_matmul, "onednn_available", lambda: False)
    with pytest.raises(ValueError, match="onednn backend needs"):
        cpu_matmul.set_matmul_backend("onednn")
    assert cpu_matmul.default_backend() == "numpy"


def test_blas_owns_threads_gives_torch_one_thread_and_restores_it(backend: None) -> None:
    cpu_matmul.set_matmul_backend("numpy")
    before = torch.get_num_threads()
    with cpu_matmul.blas_owns_threads():
        assert torch.get_num_threads() == 1
        with cpu_matmul.blas_owns_threads():  # nested: unchanged
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_matmul.blas_owns_threads():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    cpu_matmul.set_matmul_backend("torch")
    with cpu_matmul.blas_owns_threads():
        assert torch.get_num_threads() == before


def test_both_backends_give_the_same_bilm_layers(backend: None, fixture_sentences: list[list[str]]) -> None:
    streams = fixture_sentences
    char_ids = batch_to_char_ids([sentence.split() for sentence in streams[0]])
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    layers = {}
    for name in [b for b in cpu_matmul.BACKENDS if b != "onednn" or cpu_matmul.onednn_available()]:
        cpu_matmul.set_matmul_backend(name)
        model.clear_caches()
        with torch.no_grad():
            layers[name] = model(char_ids).layers
    assert (layers["numpy"] - layers["torch"]).abs().max().item() < 1e-5
    assert layers["numpy"].abs().max().item() > 0.1


@pytest.mark.parametrize(("precision", "bound"), [("bf16", 0.05), ("int8", 0.2)])
def test_faster_precisions_stay_close_to_fp32_and_change_nothing_else(
    precision: str, bound: float, fixture_sentences: list[list[str]]
) -> None:
    """bf16 and int8 change the vectors by a bounded amount; fp32 is untouched; training stays exact."""
    streams = fixture_sentences
    char_ids = batch_to_char_ids([sentence.split() for sentence in streams[0]])
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    with torch.no_grad():
        exact = model(char_ids).layers
        model.precision = precision
        approx = model(char_ids).layers
        model.precision = "fp32"
        again = model(char_ids).layers
    difference = (approx - exact).abs().max().item()
    assert 0 < difference < bound  # values reach about 7 here
    cosine = torch.nn.functional.cosine_similarity(approx[2].flatten(0, 1), exact[2].flatten(0, 1), dim=-1)
    assert cosine[exact[2].flatten(0, 1).norm(dim=-1) > 0].min().item() > 0.99
    assert torch.equal(again, exact)
    model.precision = precision
    with torch.enable_grad():  # the autograd path ignores the inference precision
        trained = model(char_ids).layers.detach()
    assert (trained - exact).abs().max().item() < 1e-5


def test_unknown_precision_is_rejected() -> None:
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    with pytest.raises(ValueError, match="precision must be one of"):
        model.precision = "fp16"
    with pytest.raises(ValueError, match="precision must be one of"):
        load_bilm(OPTIONS_FILE, WEIGHT_FILE, precision="int4")


def test_bf16_warns_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    monkeypatch.setattr(cpu_matmul, "cpu_has_bf16", lambda: False)
    with pytest.warns(ElmoPerformanceWarning, match="needs a CPU with AVX512-BF16 or AMX"):
        model.precision = "bf16"
    assert model.precision == "bf16"  # still honoured: slow, not wrong
    monkeypatch.setattr(cpu_matmul, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.precision = "bf16"
        model.precision = "int8"


def test_cpu_bf16_detection_agrees_with_the_cpu_flags() -> None:
    flags = cpu_matmul._cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags here")
    assert cpu_matmul.cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_onednn_backend_gives_the_numpy_backend_layers(backend: None, fixture_sentences: list[list[str]]) -> None:
    if not cpu_matmul.onednn_available():
        pytest.skip("oneDNN needs a CPU with AVX-512")
    char_ids = batch_to_char_ids([sentence.split() for sentence in fixture_sentences[1]])
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    layers = {}
    for name in ("onednn", "numpy"):
        cpu_matmul.set_matmul_backend(name)
        model.clear_caches()
        with torch.no_grad():
            layers[name] = model(char_ids).layers
    assert (layers["onednn"] - layers["numpy"]).abs().max().item() < 1e-5


def test_weights_are_stored_transposed_for_onednn() -> None:
    model = load_bilm(OPTIONS_FILE, WEIGHT_FILE)
    layer = model.lstm.forward_layers[0]
    for weight in (layer.input_weight, layer.hidden_weight, layer.projection_weight):
        assert weight.t().is_contiguous() and not weight.is_contiguous()
    assert model.token_encoder.highways[0].carry_weight.t().is_contiguous()


@pytest.fixture
def lstm_layout() -> Iterator[None]:
    previous = cpu_matmul.set_lstm_layout("auto")
    yield
    cpu_matmul.set_lstm_layout(previous)


def test_lstm_layout_columns_only_for_fp32_fast_kernels(
    backend: None, lstm_layout: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = torch.zeros(2, 3)
    cpu_matmul.set_matmul_backend("numpy")
    assert not cpu_matmul.lstm_uses_columns(x)  # auto: rows off Intel's oneDNN path
    cpu_matmul.set_lstm_layout("columns")
    assert cpu_matmul.lstm_uses_columns(x)
    assert not cpu_matmul.lstm_uses_columns(x.to(torch.bfloat16))
    with cpu_matmul.matmul_precision("int8"):
        assert not cpu_matmul.lstm_uses_columns(x)
    cpu_matmul.set_matmul_backend("torch")
    assert not cpu_matmul.lstm_uses_columns(x)
    cpu_matmul.set_lstm_layout("auto")
    if cpu_matmul.onednn_available():
        cpu_matmul.set_matmul_backend("onednn")
        monkeypatch.setattr(cpu_matmul, "cpu_is_intel", lambda: True)
        assert cpu_matmul.lstm_uses_columns(x)
        assert not cpu_matmul.lstm_uses_columns(x, step_work=32 * 512 * 4 * 4096)  # Original, batch 32
        cpu_matmul.set_lstm_layout("columns")
        assert cpu_matmul.lstm_uses_columns(x, step_work=32 * 512 * 4 * 4096)
        cpu_matmul.set_lstm_layout("auto")
        monkeypatch.setattr(cpu_matmul, "cpu_is_intel", lambda: False)
        assert not cpu_matmul.lstm_uses_columns(x)
    with pytest.raises(ValueError, match="LSTM layout must be one of"):
        cpu_matmul.set_lstm_layout("diagonal")
    monkeypatch.setenv("SPACY_ELMO_LSTM_LAYOUT", "diagonal")
    with pytest.raises(ValueError, match="SPACY_ELMO_LSTM_LAYOUT must be one of"):
        cpu_matmul._lstm_layout_from_environment()


def test_weight_product_equals_torch(backend: None) -> None:
    torch.manual_seed(0)
    weight_rows, columns, addend = torch.randn(40, 16), torch.randn(24, 16).t(), torch.randn(40, 1)
    assert torch.allclose(cpu_matmul.weight_product(weight_rows, columns), weight_rows @ columns, atol=1e-5)
    assert torch.allclose(
        cpu_matmul.weight_product(weight_rows, columns[:, :5], addend), weight_rows @ columns[:, :5] + addend, atol=1e-5
    )
