"""The inference path (taken without autograd) against the reference path and the fixture,
its caches' invalidation, and the chunking that bounds its memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import h5py
import numpy as np
import pytest
import torch

import spacy_elmo.bilm.cpu_matmul as cpu_matmul
import spacy_elmo.bilm.lstm as lstm_module
import spacy_elmo.bilm.token_encoder as token_encoder_module
from spacy_elmo import load_bilm
from spacy_elmo.bilm.chars import batch_to_char_ids
from spacy_elmo.bilm.model import ElmoBiLM
from spacy_elmo.bilm.token_encoder import TokenEncoder, WordVectorCache

from ..elmo_helpers import FIXTURE_DIR

# The inference path's bound (issue #4). Its products go through NumPy's BLAS, which rounds
# differently from torch's (largest difference seen on the fixture: 1.4e-6).
TOLERANCE = 1e-5


@pytest.fixture(params=["rows", "columns"])
def lstm_layout(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test with it runs once per LSTM inference layout (``cpu_matmul.lstm_uses_columns``)."""
    previous = cpu_matmul.set_lstm_layout(request.param)
    yield request.param
    cpu_matmul.set_lstm_layout(previous)


@pytest.fixture
def directions_in_two_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The LSTM's directions in two threads (on two torch threads): the fixture's steps are below
    the size that chooses it on its own."""
    monkeypatch.setattr(lstm_module, "directions_in_parallel", lambda step_work: True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def fixture_model(state: str = "reset") -> ElmoBiLM:
    return load_bilm(FIXTURE_DIR / "options.json", FIXTURE_DIR / "lm_weights.hdf5", state=state)


def fixture_sentences() -> list[list[str]]:
    streams = json.loads((FIXTURE_DIR / "sentences.json").read_text())
    return [sentence.split() for stream in streams for sentence in stream]


def reference_layers(model: ElmoBiLM, char_ids: torch.Tensor) -> torch.Tensor:
    """The autograd path: gradients enabled and the parameters require them."""
    assert all(p.requires_grad for p in model.parameters())
    with torch.enable_grad():
        layers = model(char_ids).layers
    assert layers.grad_fn is not None
    return layers.detach()


def fast_layers(model: ElmoBiLM, char_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        layers = model(char_ids).layers
    assert layers.grad_fn is None
    return layers


@pytest.mark.parametrize("state", ["reset", "stateful"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_fast_path_equals_reference_path(state: str, batch_size: int, lstm_layout: str) -> None:
    assert_fast_path_equals_reference_path(state, batch_size)


@pytest.mark.parametrize("state", ["reset", "stateful"])
def test_directions_in_two_threads_equal_reference_path(
    state: str, lstm_layout: str, directions_in_two_threads: None
) -> None:
    assert_fast_path_equals_reference_path(state, 16)


def assert_fast_path_equals_reference_path(state: str, batch_size: int) -> None:
    sentences = fixture_sentences()
    fast_model, reference_model = fixture_model(state), fixture_model(state)
    worst = 0.0
    for start in range(0, len(sentences), batch_size):
        char_ids = batch_to_char_ids(sentences[start : start + batch_size])
        fast = fast_layers(fast_model, char_ids)
        reference = reference_layers(reference_model, char_ids)
        assert fast.shape == reference.shape
        worst = max(worst, (fast - reference).abs().max().item())
        if state == "stateful":  # the carried states agree too
            for (h_fast, c_fast), (h_ref, c_ref) in zip(
                fast_model.lstm._states, reference_model.lstm._states, strict=True
            ):
                worst = max(worst, (h_fast - h_ref).abs().max().item(), (c_fast - c_ref).abs().max().item())
    assert worst < TOLERANCE


def test_fast_path_reproduces_the_reference_fixture(lstm_layout: str) -> None:
    """Stateful, batch 3, stream k in row k: AllenNLP's expected top layer within 1e-5."""
    streams = json.loads((FIXTURE_DIR / "sentences.json").read_text())
    model = fixture_model("stateful")
    worst = 0.0
    for i in range(len(streams[0])):
        outputs = model.embed_sentences([stream[i].split() for stream in streams], batch_size=3)
        for k, output in enumerate(outputs):
            with h5py.File(FIXTURE_DIR / f"lm_embeddings_{k}.hdf5", "r") as handle:
                expected = handle[str(i)][...]
            top = np.concatenate([expected[0], expected[1]], axis=-1)
            worst = max(worst, float(np.abs(output[2] - top).max()))
    assert worst < TOLERANCE


def test_gradients_flow_through_the_default_path() -> None:
    model = fixture_model()
    char_ids = batch_to_char_ids(fixture_sentences()[:4])
    model(char_ids).layers.sum().backward()
    for name in (
        "lstm.forward_layers.1.hidden_weight",
        "lstm.backward_layers.0.input_weight",
        "token_encoder.cnn.embedding.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum().item() > 0, name


def test_training_path_gradients_equal_one_row_at_a_time() -> None:
    """Padded, sorted batch vs each row alone: same outputs, same gradients (float64)."""
    torch.manual_seed(0)
    layer = lstm_module.ProjectedLstmLayer(5, 6, 4, cell_clip=3.0, proj_clip=3.0).double()
    lengths = [7, 5, 5, 2]
    inputs = torch.randn(len(lengths), 7, 5, dtype=torch.float64)
    output_weights = torch.randn(len(lengths), 7, 4, dtype=torch.float64)
    initial = (torch.randn(len(lengths), 4, dtype=torch.float64), torch.randn(len(lengths), 6, dtype=torch.float64))

    def loss_and_grads(rows: slice, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        layer.zero_grad()
        x = inputs[rows, :steps].clone().requires_grad_(True)
        out, (h, c) = layer(x, lengths[rows], (initial[0][rows], initial[1][rows]))
        loss = (out * output_weights[rows, :steps]).sum() + h.sum() + 0.5 * c.sum()
        loss.backward()
        return out.detach(), [x.grad] + [p.grad.clone() for p in layer.parameters()]

    batch_out, batch_grads = loss_and_grads(slice(None), 7)
    assert batch_out[3, 2:].abs().max().item() == 0.0  # zero past a row's length
    summed: list[torch.Tensor] = [torch.zeros_like(g) for g in batch_grads[1:]]
    for row, length in enumerate(lengths):
        out, grads = loss_and_grads(slice(row, row + 1), length)
        torch.testing.assert_close(batch_out[row, :length], out[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(batch_grads[0][row, :length], grads[0][0], rtol=0, atol=1e-12)
        if length < 7:  # padding gets no gradient
            assert batch_grads[0][row, length:].abs().max().item() == 0.0
        summed = [total + g for total, g in zip(summed, grads[1:], strict=True)]
    for total, batched in zip(summed, batch_grads[1:], strict=True):
        torch.testing.assert_close(batched, total, rtol=0, atol=1e-10)


def test_word_cache_is_dropped_after_load_state_dict() -> None:
    model, other = fixture_model(), fixture_model()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    char_ids = batch_to_char_ids(fixture_sentences()[:5])
    before = fast_layers(model, char_ids)
    assert len(model.word_cache) > 0
    model.load_state_dict(other.state_dict())
    after = fast_layers(model, char_ids)
    expected = reference_layers(other, char_ids)
    assert (after - expected).abs().max().item() < TOLERANCE
    assert (after - before).abs().max().item() > 1e-3


def test_word_cache_is_dropped_after_an_optimizer_step() -> None:
    model = fixture_model()
    char_ids = batch_to_char_ids(fixture_sentences()[:5])
    before = fast_layers(model, char_ids)
    optimizer = torch.optim.SGD(model.token_encoder.parameters(), lr=0.5)
    model(char_ids).layers[0].pow(2).sum().backward()
    optimizer.step()
    after = fast_layers(model, char_ids)
    model.clear_caches()
    assert len(model.word_cache) == 0
    uncached = fast_layers(model, char_ids)
    assert torch.equal(after, uncached)
    assert (after - before).abs().max().item() > 1e-4


def test_word_cache_is_a_bounded_lru() -> None:
    encoder = fixture_model().token_encoder
    words = [f"word{k}" for k in range(8)]
    char_ids = batch_to_char_ids([words])[0]
    cache = WordVectorCache(max_words=5)
    with torch.no_grad():
        expected = encoder(char_ids)
        first = cache.encode(encoder, char_ids)
        assert len(cache) == 5
        again = cache.encode(encoder, char_ids[5:])  # the most recent five are cached
    assert torch.allclose(first, expected, atol=TOLERANCE, rtol=0)
    assert torch.equal(again, first[5:])
    assert len(cache) == 5


def test_token_encoder_runs_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CNN's per-position activations exist for at most ``chunk_tokens`` tokens at a time;
    the highway layers take ``HIGHWAY_CHUNKS`` CNN chunks at once, rounded up to
    ``token_rows`` rows (zero rows, dropped)."""
    model = fixture_model()
    encoder: TokenEncoder = model.token_encoder
    char_ids = batch_to_char_ids([[f"t{k}" for k in range(50)]])[0]
    monkeypatch.setattr(token_encoder_module, "HIGHWAY_CHUNKS", 2)
    with torch.no_grad():
        whole = encoder(char_ids)
        cnn_rows: list[int] = []
        highway_rows: list[int] = []
        cnn_forward, highway_forward = encoder.cnn.forward, encoder.highways[0].forward
        monkeypatch.setattr(encoder.cnn, "forward", lambda ids: cnn_rows.append(ids.shape[0]) or cnn_forward(ids))
        monkeypatch.setattr(
            encoder.highways[0], "forward", lambda x: highway_rows.append(x.shape[0]) or highway_forward(x)
        )
        encoder.chunk_tokens = 16
        chunked = encoder(char_ids)
    assert cnn_rows == [16, 16, 16, 2]
    assert highway_rows == [32, 24]  # 18 rows rounded to a multiple of 8
    assert [token_encoder_module.token_rows(n) for n in (1, 8, 9, 64, 65, 97)] == [8, 8, 16, 64, 96, 128]
    assert torch.allclose(chunked, whole, atol=TOLERANCE, rtol=0)


def full_width_cnn(cnn: torch.nn.Module, char_ids: torch.Tensor) -> torch.Tensor:
    """The char CNN convolving all 50 positions: ``(n, 50)`` ids to ``(n, sum of filters)``."""
    chars = cnn.embedding(char_ids).transpose(1, 2)
    return cnn.activation(torch.cat([conv(chars).amax(dim=2) for conv in cnn.convolutions], dim=1))


def test_cnn_skips_trailing_padding_exactly() -> None:
    """The CNN convolves only up to the longest token (+ filter width): same vectors, same gradients."""
    model = fixture_model()
    words = ["a", "of", "bank", "Mississippi", "x" * 30, "y" * 48, "ünïcödé", "", "3.14"]
    char_ids = batch_to_char_ids([words])[0]
    cnn = model.token_encoder.cnn
    with torch.no_grad():
        full = full_width_cnn(cnn, char_ids)
        for subset in ([0, 1, 2], [3], [0, 4], [5, 1], [6, 7, 8], list(range(len(words)))):
            cropped = cnn(char_ids[subset])
            assert torch.allclose(cropped, full[subset], atol=TOLERANCE, rtol=0), subset
    output_weights = torch.randn(full.shape, generator=torch.Generator().manual_seed(0))
    for subset in ([0, 1, 2], [6, 7, 8]):  # short tokens: many tied padding windows
        grads = []
        for forward in (cnn, lambda ids: full_width_cnn(cnn, ids)):
            cnn.zero_grad()
            (forward(char_ids[subset]) * output_weights[subset]).sum().backward()
            grads.append([p.grad.clone() for p in cnn.parameters()])
        for cropped_grad, full_grad in zip(*grads, strict=True):
            assert torch.allclose(cropped_grad, full_grad, atol=TOLERANCE, rtol=0)


def test_lstm_input_gates_are_computed_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch, lstm_layout: str) -> None:
    """Input-gate memory depends on the byte budget and the batch, not on the input's length."""
    assert lstm_module.steps_per_chunk(2 * 32, 4 * 4096) == 2  # Original, batch 32, both directions: 8 MB
    assert lstm_module.steps_per_chunk(2, 4 * 4096) == 64
    assert lstm_module.steps_per_chunk(10**6, 4 * 4096) == 1
    sentences = fixture_sentences()[:6]
    char_ids = batch_to_char_ids(sentences)
    model = fixture_model()
    whole = fast_layers(model, char_ids)
    gate_dim = 4 * model.options.lstm_dim
    monkeypatch.setattr(lstm_module, "INPUT_GATES_BUDGET_BYTES", 3 * 2 * len(sentences) * gate_dim * 4)
    allocated: list[int] = []  # rows x steps of each input-gate chunk
    original_addmm, original_weight_product = lstm_module.addmm, lstm_module.weight_product

    lstm = model.lstm
    input_weights = {layer.input_weight.data_ptr() for layer in [*lstm.forward_layers, *lstm.backward_layers]}

    def spy_addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = original_addmm(bias, a, b)
        if b.data_ptr() in input_weights:
            allocated.append(out.shape[0])
        return out

    def spy_weight_product(
        weight_rows: torch.Tensor, columns: torch.Tensor, addend: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = original_weight_product(weight_rows, columns, addend)
        if weight_rows.data_ptr() in input_weights:
            allocated.append(out.shape[1])
        return out

    monkeypatch.setattr(lstm_module, "addmm", spy_addmm)
    monkeypatch.setattr(lstm_module, "weight_product", spy_weight_product)
    chunked = fast_layers(model, char_ids)
    monkeypatch.undo()
    assert allocated and max(allocated) <= 3 * len(sentences)
    assert (chunked - whole).abs().max().item() < TOLERANCE


def test_word_cache_outputs_equal_the_uncached_path() -> None:
    """Batches that share words: cached vectors within 1e-6 of encoding every token again."""
    sentences = fixture_sentences()
    cached = load_bilm(FIXTURE_DIR / "options.json", FIXTURE_DIR / "lm_weights.hdf5", word_cache_size=1000)
    uncached = load_bilm(FIXTURE_DIR / "options.json", FIXTURE_DIR / "lm_weights.hdf5", word_cache_size=0)
    encoded_rows: list[int] = []
    encoder_forward = cached.token_encoder.forward
    cached.token_encoder.forward = lambda ids: encoded_rows.append(ids.shape[0]) or encoder_forward(ids)  # type: ignore[method-assign]
    with_cache = cached.embed_sentences(sentences, batch_size=4)
    first_pass = sum(encoded_rows)
    again = cached.embed_sentences(sentences, batch_size=4)
    without = uncached.embed_sentences(sentences, batch_size=4)
    assert len(uncached.word_cache) == 0 and len(cached.word_cache) > 0
    n_types = len({token for sentence in sentences for token in sentence}) + 2  # and <S>, </S>
    assert first_pass == n_types  # each type encoded once over all batches
    assert sum(encoded_rows) == first_pass  # the second pass found every word in the cache
    worst = max(float(np.abs(a - b).max()) for a, b in zip(with_cache, without, strict=True))
    assert worst <= 1e-6
    assert all(np.array_equal(a, b) for a, b in zip(with_cache, again, strict=True))


def test_word_cache_size_bounds_the_cache_and_is_checked() -> None:
    model = load_bilm(FIXTURE_DIR / "options.json", FIXTURE_DIR / "lm_weights.hdf5", word_cache_size=7)
    assert model.word_cache_size == 7
    model.embed_sentences(fixture_sentences()[:6], batch_size=3)
    assert len(model.word_cache) == 7
    model.word_cache_size = 2
    assert len(model.word_cache) == 2
    model.word_cache_size = 0
    assert len(model.word_cache) == 0
    model.embed_sentences(fixture_sentences()[:2])
    assert len(model.word_cache) == 0
    with pytest.raises(ValueError, match="word_cache_size must be >= 0"):
        load_bilm(FIXTURE_DIR / "options.json", FIXTURE_DIR / "lm_weights.hdf5", word_cache_size=-1)
    with pytest.raises(TypeError, match="word_cache_size must be a whole number"):
        model.word_cache_size = 1.5  # type: ignore[assignment]


def test_word_cache_is_not_used_with_gradients_or_in_training_mode() -> None:
    model = fixture_model()
    char_ids = batch_to_char_ids(fixture_sentences()[:4])
    layers = model(char_ids).layers  # gradients flow into the token encoder
    assert layers.grad_fn is not None and len(model.word_cache) == 0
    layers[0].sum().backward()
    assert model.token_encoder.projection_weight.grad is not None
    model.train()
    with torch.no_grad():
        model(char_ids)
    assert len(model.word_cache) == 0
    model.eval()
    with torch.no_grad():
        model(char_ids)
    assert len(model.word_cache) > 0


def test_word_cache_is_dropped_when_parameter_data_is_replaced() -> None:
    """As thinc's optimizer step does (``parameter.data = new``), without touching the version counter."""
    model = fixture_model()
    char_ids = batch_to_char_ids(fixture_sentences()[:5])
    before = fast_layers(model, char_ids)
    weight = model.token_encoder.highways[0].transform_weight
    weight.data = weight.data * 0.5
    after = fast_layers(model, char_ids)
    model.clear_caches()
    assert torch.equal(after, fast_layers(model, char_ids))
    assert (after - before).abs().max().item() > 1e-4


@pytest.mark.parametrize(
    "run_direction", [lstm_module.run_direction_inference, lstm_module.run_direction_inference_columns]
)
def test_fast_path_final_states_when_every_row_ends_before_the_last_step(
    run_direction: Callable[..., tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """Inputs longer than every row: same outputs and final states as the autograd path."""
    torch.manual_seed(0)
    layer = lstm_module.ProjectedLstmLayer(5, 6, 4, cell_clip=3.0, proj_clip=3.0)
    lengths = [5, 3, 3, 1]
    inputs = torch.randn(len(lengths), 8, 5)
    initial = (torch.randn(len(lengths), 4), torch.randn(len(lengths), 6))
    with torch.no_grad():
        expected, (h_ref, c_ref) = layer(inputs, lengths, initial)
        outputs = inputs.new_zeros(8, len(lengths), 4)
        h, c = run_direction(layer, inputs, lengths, initial, outputs, len(lengths))
    assert h.shape == h_ref.shape and c.shape == c_ref.shape
    assert torch.allclose(outputs.transpose(0, 1), expected, atol=TOLERANCE, rtol=0)
    assert torch.allclose(h, h_ref, atol=TOLERANCE, rtol=0) and torch.allclose(c, c_ref, atol=TOLERANCE, rtol=0)


def test_directions_run_in_parallel_only_for_large_enough_steps() -> None:
    small, medium = 128 * 4 * 1024, 256 * 4 * 2048  # one row's step
    assert not lstm_module.directions_in_parallel(small)  # Small, batch 1
    assert lstm_module.directions_in_parallel(medium)  # Medium, batch 1
    assert lstm_module.directions_in_parallel(32 * small)


@pytest.mark.parametrize(
    "run_direction", [lstm_module.run_direction_inference, lstm_module.run_direction_inference_columns]
)
@pytest.mark.parametrize("batch", [1, 3])
def test_fast_path_leaves_the_initial_state_alone(
    run_direction: Callable[..., tuple[torch.Tensor, torch.Tensor]], batch: int
) -> None:
    torch.manual_seed(0)
    layer = lstm_module.ProjectedLstmLayer(5, 6, 4, cell_clip=3.0, proj_clip=3.0)
    initial = (torch.randn(batch, 4), torch.randn(batch, 6))
    before = (initial[0].clone(), initial[1].clone())
    with torch.no_grad():
        run_direction(layer, torch.randn(batch, 7, 5), [7] * batch, initial, torch.zeros(7, batch, 4), batch)
    assert torch.equal(initial[0], before[0]) and torch.equal(initial[1], before[1])
