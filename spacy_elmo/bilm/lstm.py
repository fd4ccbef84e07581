"""LSTM layers with a projected, clipped hidden state, and ELMo's bidirectional stack.

One layer follows TF 1.x ``LSTMCell(num_units=C, num_proj=P, cell_clip, proj_clip)``
with gates in TF order (input i, candidate j, forget f, output o) and a
forget-gate bias of +1.0 added at compute time, so the stored bias stays the
file's value bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from .cpu_matmul import (
    addmm,
    initialize_in_logical_order,
    lstm_uses_columns,
    matmul,
    matmul_add,
    single_threaded_blas,
    threads_for_directions,
    transposed_parameter,
    weight_product,
)
from .memory import release_free_memory
from .options import ElmoOptions

State = tuple[torch.Tensor, torch.Tensor]
"""``(h, c)``: hidden ``(rows, P)`` and cell ``(rows, C)``."""


def rows_running(lengths: list[int], active: int, t: int) -> int:
    """How many of the first ``active`` rows (``lengths`` non-increasing) still run at step ``t``."""
    while active > 0 and lengths[active - 1] <= t:
        active -= 1
    return active


class ProjectedLstmLayer(nn.Module):
    """One direction of one layer.

    Weights in TF layout: ``input_weight (in, 4C)``, ``hidden_weight (P, 4C)``,
    ``bias (4C)`` (without the forget offset), ``projection_weight (C, P)``; the three
    matrices are stored transposed (``cpu_matmul.transposed_parameter``).
    """

    def __init__(
        self,
        input_dim: int,
        cell_dim: int,
        projection_dim: int,
        cell_clip: float | None,
        proj_clip: float | None,
        initialize: bool = True,
    ) -> None:
        super().__init__()
        self.cell_dim = cell_dim
        self.projection_dim = projection_dim
        self.cell_clip = cell_clip
        self.proj_clip = proj_clip
        self.input_weight = transposed_parameter(input_dim, 4 * cell_dim)
        self.hidden_weight = transposed_parameter(projection_dim, 4 * cell_dim)
        self.bias = nn.Parameter(torch.zeros(4 * cell_dim))
        self.projection_weight = transposed_parameter(cell_dim, projection_dim)
        forget_offset = torch.zeros(4 * cell_dim)
        forget_offset[2 * cell_dim : 3 * cell_dim] = 1.0
        self.register_buffer("forget_offset", forget_offset, persistent=False)
        if initialize:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """TF's glorot-uniform on the fused ``[x; h] @ W_0`` kernel and on ``W_P``."""
        fan_in = self.input_weight.shape[0] + self.hidden_weight.shape[0]
        bound = (6.0 / (fan_in + 4 * self.cell_dim)) ** 0.5
        proj_bound = (6.0 / (self.cell_dim + self.projection_dim)) ** 0.5
        with torch.no_grad():
            initialize_in_logical_order(self.input_weight, lambda w: nn.init.uniform_(w, -bound, bound))
            initialize_in_logical_order(self.hidden_weight, lambda w: nn.init.uniform_(w, -bound, bound))
            initialize_in_logical_order(self.projection_weight, lambda w: nn.init.uniform_(w, -proj_bound, proj_bound))
            self.bias.zero_()

    def forward(self, inputs: torch.Tensor, lengths: list[int], initial: State) -> tuple[torch.Tensor, State]:
        """Run over rows sorted by length, longest first.

        Args:
            inputs: ``(B, T, in)``; positions at or past a row's length are ignored.
            lengths: ``B`` non-increasing lengths.
            initial: ``(h (B, P), c (B, C))``.

        Returns:
            outputs ``(B, T, P)``, zero past each row's length, and each row's
            final state after its own last valid step.
        """
        batch, steps, _ = inputs.shape
        gates_from_input = torch.matmul(inputs, self.input_weight) + (self.bias + self.forget_offset)
        # Per-step views from one unbind and one stack at the end: indexing a time step of a
        # (B, T, ...) tensor, or writing into one, costs autograd a full-size tensor per step.
        gates_per_step = gates_from_input.unbind(1)
        step_outputs: list[torch.Tensor] = []
        h, c = initial
        final_h: list[torch.Tensor] = []
        final_c: list[torch.Tensor] = []
        active = batch
        C = self.cell_dim
        for t in range(steps):
            still = rows_running(lengths, active, t)
            if still < active:
                # Rows [still, active) have ended: their state is final.
                final_h.append(h[still:active])
                final_c.append(c[still:active])
                h, c, active = h[:still], c[:still], still
            if active == 0:
                break
            gates = torch.addmm(gates_per_step[t][:active], h, self.hidden_weight)
            i = torch.sigmoid(gates[:, :C])
            j = torch.tanh(gates[:, C : 2 * C])
            f = torch.sigmoid(gates[:, 2 * C : 3 * C])
            o = torch.sigmoid(gates[:, 3 * C :])
            c = f * c + i * j
            if self.cell_clip is not None:
                c = torch.clamp(c, -self.cell_clip, self.cell_clip)
            h = torch.matmul(o * torch.tanh(c), self.projection_weight)
            if self.proj_clip is not None:
                h = torch.clamp(h, -self.proj_clip, self.proj_clip)
            step_outputs.append(h)
        final_h.append(h)
        final_c.append(c)
        # Pieces were collected from the shortest rows back to the longest.
        final = (torch.cat(final_h[::-1]), torch.cat(final_c[::-1]))
        return pad_and_stack_steps(step_outputs, batch, steps, self.projection_dim, inputs), final


def pad_and_stack_steps(
    step_outputs: list[torch.Tensor], batch: int, steps: int, projection_dim: int, like: torch.Tensor
) -> torch.Tensor:
    """``(B, T, P)`` from per-step outputs ``(active_t, P)`` (``active_t`` non-increasing), zero
    for rows past their length and for steps after the last one; new tensors take ``like``'s dtype and device."""
    padded = [
        out if out.shape[0] == batch else torch.cat([out, out.new_zeros(batch - out.shape[0], projection_dim)])
        for out in step_outputs
    ]
    padded += [like.new_zeros(batch, projection_dim)] * (steps - len(padded))
    return torch.stack(padded, dim=1)


# Bytes of input-gate pre-activations the inference path computes at once; bounds its
# memory for long inputs (the reference path computes them for all steps at once).
INPUT_GATES_BUDGET_BYTES = 8 * 2**20


def steps_per_chunk(rows: int, gate_dim: int, itemsize: int = 4, budget: int | None = None) -> int:
    """Time steps whose ``(rows, steps, gate_dim)`` input gates fit in ``budget`` bytes
    (default ``INPUT_GATES_BUDGET_BYTES``); at least 1."""
    budget = INPUT_GATES_BUDGET_BYTES if budget is None else budget
    return max(1, budget // max(1, rows * gate_dim * itemsize))


# The inference path's products run on a multiple of this many rows (rows past the
# active ones are computed and dropped): oneDNN keeps a compiled kernel per shape, about
# 0.5 MB each, and a batch whose rows end one by one would otherwise ask for every size.
ROW_GROUP = 8


def grouped_rows(active: int, batch: int) -> int:
    """``active`` rounded up to a multiple of ``ROW_GROUP``, at most ``batch``."""
    return min(batch, -(-active // ROW_GROUP) * ROW_GROUP)


def step_major_chunk(inputs: torch.Tensor, rows: int, start: int, chunk: int) -> torch.Tensor:
    """The first ``rows`` rows of ``inputs (B, T, in)`` at steps ``start .. start + chunk`` (cut at ``T``),
    step-major: ``(steps * rows, in)``, the input of one chunk's input-gate product."""
    stop = min(inputs.shape[1], start + chunk)
    return inputs[:rows, start:stop].transpose(0, 1).reshape(-1, inputs.shape[2])


def run_direction_inference(
    layer: ProjectedLstmLayer,
    inputs: torch.Tensor,
    lengths: list[int],
    initial: State,
    outputs: torch.Tensor,
    gate_budget_rows: int,
) -> State:
    """``layer.forward`` without autograd (same results), writing into ``outputs``.

    Hidden states go straight into ``outputs (T, B, P)`` (zero-filled by the caller),
    the cell state is updated in place, and the input gates are computed for a
    chunk of steps at a time (one large product, bias fused), sized for
    ``gate_budget_rows`` rows (both directions' rows when they run at once). Each
    step's recurrent product has the step's input gates fused into it. Products run
    on ``grouped_rows`` rows; the rows past the active ones hold finished rows' last
    (finite) values and their results are dropped. Matrix products go through
    ``cpu_matmul``.

    Args:
        inputs: ``(B, T, in)``, rows sorted by ``lengths``, longest first.
        initial: ``(h (B, P), c (B, C))``.

    Returns:
        each row's final ``(h, c)`` after its own last valid step.
    """
    batch, steps, _ = inputs.shape
    C = layer.cell_dim
    hidden, cell = initial[0], initial[1].clone()  # cell: updated in place
    bias = layer.bias + layer.forget_offset
    chunk = min(steps, steps_per_chunk(gate_budget_rows, 4 * C, inputs.element_size()))
    input_gates = inputs.new_empty(0, batch, 4 * C)
    # m = o * tanh(c), the projection's input; its rows past the active ones stay finite
    cell_output = inputs.new_zeros(batch, C)
    final_h: list[torch.Tensor] = []
    final_c: list[torch.Tensor] = []
    active = batch
    for t in range(steps):
        still = rows_running(lengths, active, t)
        if still < active:
            # Rows [still, active) have ended: their state is final.
            final_h.append(hidden[still:active])
            final_c.append(cell[still:active])
            hidden, cell, active = hidden[:still], cell[:still], still
        if active == 0:
            break
        rows = grouped_rows(active, batch)
        offset = t % chunk
        if offset == 0:
            # (steps of this chunk, rows, 4C): each step's slice is contiguous.
            del input_gates  # the previous chunk's, before the next one is made
            step_major = step_major_chunk(inputs, rows, t, chunk)
            input_gates = addmm(bias, step_major, layer.input_weight).view(-1, rows, 4 * C)
        previous = initial[0] if t == 0 else outputs[t - 1]
        gates = matmul_add(previous[:rows], layer.hidden_weight, input_gates[offset, :rows])[:active]
        # TF gate order i, j, f, o
        gates[:, :C].sigmoid_()
        gates[:, C : 2 * C].tanh_()
        gates[:, 2 * C :].sigmoid_()
        i, j, f, o = gates.split(C, dim=1)
        cell.mul_(f).addcmul_(i, j)
        if layer.cell_clip is not None:
            cell.clamp_(-layer.cell_clip, layer.cell_clip)
        torch.tanh(cell, out=cell_output[:active]).mul_(o)
        projected = matmul(cell_output[:rows], layer.projection_weight)
        hidden = outputs[t, :active]
        if layer.proj_clip is not None:
            torch.clamp(projected[:active], -layer.proj_clip, layer.proj_clip, out=hidden)
        else:
            hidden.copy_(projected[:active])
    final_h.append(hidden)
    final_c.append(cell)
    # Pieces were collected from the shortest rows back to the longest.
    return torch.cat(final_h[::-1]), torch.cat(final_c[::-1])


def run_direction_inference_columns(
    layer: ProjectedLstmLayer,
    inputs: torch.Tensor,
    lengths: list[int],
    initial: State,
    outputs: torch.Tensor,
    gate_budget_rows: int,
) -> State:
    """``run_direction_inference`` (same arguments, outputs and results up to float rounding)
    with the state kept as columns: hidden ``(P, B)``, cell ``(C, B)``, gates ``(4C, rows)``.

    Each product is ``weight (out, in) @ columns (in, rows)`` (``cpu_matmul.weight_product``):
    the stored ``(out, in)`` weights as they lie, the batch as the narrow dimension, which
    torch's MKL multiplies faster than the rows layout's ``(rows, in) @ (in, out)`` on the
    CPUs where ``cpu_matmul.lstm_uses_columns`` chooses it. Columns past the active ones hold
    finished rows' last (finite) values; their results are dropped.
    """
    batch, steps, _ = inputs.shape
    C = layer.cell_dim
    input_rows = layer.input_weight.t()  # (4C, in)
    hidden_rows = layer.hidden_weight.t()  # (4C, P)
    projection_rows = layer.projection_weight.t()  # (P, C)
    bias = (layer.bias + layer.forget_offset).unsqueeze(1)  # (4C, 1)
    hidden = initial[0].t()  # (P, B)
    cell = inputs.new_empty(C, batch).copy_(initial[1].t())  # (C, B), a copy updated in place
    cell_output = inputs.new_zeros(C, batch)  # m = o * tanh(c), the projection's input
    chunk = min(steps, steps_per_chunk(gate_budget_rows, 4 * C, inputs.element_size()))
    input_gates = inputs.new_empty(4 * C, 0)
    chunk_rows = batch
    final_h: list[torch.Tensor] = []
    final_c: list[torch.Tensor] = []
    active = batch
    for t in range(steps):
        still = rows_running(lengths, active, t)
        if still < active:
            # Rows [still, active) have ended: their state is final (copied: columns past the
            # active ones are still written by the grouped products' elementwise work).
            final_h.append((initial[0] if t == 0 else outputs[t - 1])[still:active])
            final_c.append(cell[:, still:active].t().clone())
            active = still
        if active == 0:
            break
        rows = grouped_rows(active, batch)
        offset = t % chunk
        if offset == 0:
            # (4C, steps of this chunk * rows), step-major columns: one large product, bias fused.
            del input_gates  # the previous chunk's, before the next one is made
            input_gates = weight_product(input_rows, step_major_chunk(inputs, rows, t, chunk).t(), bias)
            chunk_rows = rows
        step_gates = input_gates[:, offset * chunk_rows : offset * chunk_rows + rows]
        gates = weight_product(hidden_rows, hidden[:, :rows], step_gates)
        # TF gate order i, j, f, o
        gates[:C].sigmoid_()
        gates[C : 2 * C].tanh_()
        gates[2 * C :].sigmoid_()
        i, j, f, o = (gate[:, :active] for gate in gates.split(C, dim=0))
        live_cell = cell[:, :active]
        live_cell.mul_(f).addcmul_(i, j)
        if layer.cell_clip is not None:
            live_cell.clamp_(-layer.cell_clip, layer.cell_clip)
        torch.tanh(live_cell, out=cell_output[:, :active]).mul_(o)
        hidden = weight_product(projection_rows, cell_output[:, :rows])  # (P, rows)
        if layer.proj_clip is not None:
            hidden.clamp_(-layer.proj_clip, layer.proj_clip)
        outputs[t, :active].copy_(hidden[:, :active].t())
    final_h.append(outputs[steps - 1, :active] if active and steps else initial[0][:active])
    final_c.append(cell[:, :active].t())
    # Pieces were collected from the shortest rows back to the longest.
    return torch.cat(final_h[::-1]), torch.cat(final_c[::-1])


# Multiply-adds of one direction's recurrent product per step (rows x P x 4C) below which
# the directions run one after the other on one thread: on such small steps the second
# thread's hand-offs cost more than it saves. Small model, batch 1 (0.5M), on the Intel
# Sapphire Rapids of bench/RESULTS.md, side by side in one process: 575 tokens/s on one
# thread, 544 in two; beside another two-threaded job 556 and 367 (and 16 with the products
# on two threads, whose every step waits on the busy core). Medium at batch 1 (2.1M) gained
# from two threads: 376 vs 265.
PARALLEL_DIRECTIONS_MIN_WORK = 1_000_000


def directions_in_parallel(step_work: int) -> bool:
    """Whether two directions whose steps cost ``step_work`` multiply-adds each run in two
    threads (given two threads to spend)."""
    return step_work >= PARALLEL_DIRECTIONS_MIN_WORK


_second_direction_thread: ThreadPoolExecutor | None = None


def _second_direction() -> ThreadPoolExecutor:
    global _second_direction_thread
    if _second_direction_thread is None:
        _second_direction_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacy_elmo_lstm")
    return _second_direction_thread


def _forget_thread_in_child() -> None:
    # A forked child (nlp.pipe(n_process=N)) has no copy of the parent's worker thread.
    global _second_direction_thread
    _second_direction_thread = None


os.register_at_fork(after_in_child=_forget_thread_in_child)


def run_directions_inference(
    layers: tuple[ProjectedLstmLayer, ProjectedLstmLayer],
    inputs: tuple[torch.Tensor, torch.Tensor],
    lengths: list[int],
    initial: tuple[State, State],
) -> tuple[list[torch.Tensor], list[State]]:
    """Both directions' ``ProjectedLstmLayer.forward`` without autograd (same results).

    With two or more CPU threads to spend (``cpu_matmul.threads_for_directions``) and
    steps large enough (``directions_in_parallel``), the backward direction runs in a second
    thread beside the forward one, each with a single-threaded BLAS: their matrix products
    then go as fast as one two-threaded product, and the elementwise work of the two runs in
    parallel. Smaller steps run one direction after the other on one thread. Each direction
    runs in the layout ``cpu_matmul.lstm_uses_columns`` chooses.

    Returns:
        per direction the outputs ``(B, T, P)`` and the final ``(h, c)``.
    """
    batch, steps, _ = inputs[0].shape
    outputs = inputs[0].new_zeros(2, steps, batch, layers[0].projection_dim)
    args = [(layers[d], inputs[d], lengths, initial[d], outputs[d], 2 * batch) for d in range(2)]
    step_work = batch * layers[0].projection_dim * 4 * layers[0].cell_dim
    columns = lstm_uses_columns(*inputs, step_work=step_work)
    run = run_direction_inference_columns if columns else run_direction_inference
    if threads_for_directions(*inputs) < 2:
        finals = [run(*args[d]) for d in range(2)]
    elif not directions_in_parallel(step_work):
        with single_threaded_blas():
            finals = [run(*args[d]) for d in range(2)]
    else:
        with single_threaded_blas():

            def backward_direction() -> State:
                # OpenMP's thread count is per thread too: this one would otherwise start every
                # torch operation on two threads, on a core the forward direction is using.
                if torch.get_num_threads() != 1:
                    torch.set_num_threads(1)
                with torch.no_grad():  # grad mode is per thread
                    return run(*args[1])

            pending = _second_direction().submit(backward_direction)
            try:
                forward_final = run(*args[0])
            finally:
                backward_final = pending.result()
        finals = [forward_final, backward_final]
    return [outputs[d].transpose(0, 1) for d in range(2)], finals


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's valid prefix of ``x (B, T, D)``; the padding stays put."""
    steps = x.shape[1]
    positions = torch.arange(steps, device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class ElmoLstm(nn.Module):
    """Forward and backward LSTM stacks with optional residual connections.

    The stacks never mix. With skip connections, layer ``l >= 1`` outputs
    ``LSTM_l(in_l) + in_l``; the carried hidden state is the pre-residual one.
    """

    def __init__(self, options: ElmoOptions, initialize: bool = True) -> None:
        super().__init__()
        self.n_layers = options.n_layers
        self.projection_dim = options.projection_dim
        self.cell_dim = options.lstm_dim
        self.use_skip_connections = options.use_skip_connections

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                ProjectedLstmLayer(
                    options.projection_dim,
                    options.lstm_dim,
                    options.projection_dim,
                    options.cell_clip,
                    options.proj_clip,
                    initialize,
                )
                for _ in range(options.n_layers)
            )

        self.forward_layers = stack()
        self.backward_layers = stack()
        # Per (direction, layer): the carried (h, c) of every row seen so far.
        self._states: list[State] | None = None

    def reset_states(self) -> None:
        """Forget all carried state: the next call starts every row from zero."""
        self._states = None

    def _initial_states(self, batch: int, like: torch.Tensor, stateful: bool) -> list[State]:
        zero_h = like.new_zeros(batch, self.projection_dim)
        zero_c = like.new_zeros(batch, self.cell_dim)
        if not stateful or self._states is None:
            return [(zero_h, zero_c)] * (2 * self.n_layers)
        initial = []
        for h, c in self._states:
            rows = min(batch, h.shape[0])
            h0, c0 = zero_h.clone(), zero_c.clone()
            h0[:rows], c0[:rows] = h[:rows].to(like), c[:rows].to(like)
            initial.append((h0, c0))
        return initial

    def _store_states(self, finals: list[State], batch: int) -> None:
        if self._states is None:
            self._states = [(h.new_zeros(0, h.shape[1]), c.new_zeros(0, c.shape[1])) for h, c in finals]
        stored = []
        for (old_h, old_c), (h, c) in zip(self._states, finals, strict=True):
            h, c = h.detach(), c.detach()
            if old_h.shape[0] > batch:
                h = torch.cat([h, old_h[batch:].to(h)])
                c = torch.cat([c, old_c[batch:].to(c)])
            stored.append((h, c))
        self._states = stored

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        stateful: bool = False,
        emit: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> list[torch.Tensor]:
        """Run both directions over ``inputs (B, T, P)`` with valid ``lengths (B,)``.

        Returns one ``(B, T, 2P)`` tensor per layer, forward half first, zero past
        each row's length. With ``stateful``, row ``r`` starts from the final
        state row ``r`` had at the end of the previous stateful call. With ``emit``
        (no autograd) nothing is returned: ``emit(layer, forward (B, T, P), backward
        (B, T, P))`` gets each layer's halves instead (backward in forward time order),
        for the caller to copy where it wants them without a ``(B, T, 2P)`` copy.
        """
        batch = inputs.shape[0]
        order = torch.argsort(lengths, descending=True, stable=True)
        restore = torch.argsort(order)
        # Reset-mode callers pass rows sorted by length already: then no reordering copies.
        in_order = bool((order == torch.arange(batch, device=order.device)).all())
        sorted_lengths = lengths[order].tolist()
        order_dev = order.to(inputs.device)
        initial = self._initial_states(batch, inputs, stateful)
        initial = [(h[order_dev], c[order_dev]) for h, c in initial]

        x_forward = inputs if in_order else inputs[order_dev]
        x_backward = reverse_padded(x_forward, lengths[order])
        sorted_len_tensor = lengths[order]
        finals_forward: list[State] = []
        finals_backward: list[State] = []
        layer_outputs: list[torch.Tensor] = []
        # Without gradients to track, a faster path that gives the same values.
        fast = not torch.is_grad_enabled() or not (
            inputs.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        for layer in range(self.n_layers):
            forward_layer, backward_layer = self.forward_layers[layer], self.backward_layers[layer]
            initial_f, initial_b = initial[layer], initial[self.n_layers + layer]
            if fast:
                (out_f, out_b), (final_f, final_b) = run_directions_inference(
                    (forward_layer, backward_layer), (x_forward, x_backward), sorted_lengths, (initial_f, initial_b)
                )
                release_free_memory()  # both threads' step temporaries
            else:
                out_f, final_f = forward_layer(x_forward, sorted_lengths, initial_f)
                out_b, final_b = backward_layer(x_backward, sorted_lengths, initial_b)
            if self.use_skip_connections and layer > 0:
                if fast:  # views of the inference path's own output buffer
                    out_f.add_(x_forward)
                    out_b.add_(x_backward)
                else:
                    out_f = out_f + x_forward
                    out_b = out_b + x_backward
            finals_forward.append(final_f)
            finals_backward.append(final_b)
            if emit is not None:
                backward = reverse_padded(out_b, sorted_len_tensor)
                if in_order:
                    emit(layer, out_f, backward)
                else:
                    restore_dev = restore.to(inputs.device)
                    emit(layer, out_f[restore_dev], backward[restore_dev])
                del backward
            else:
                both = torch.cat([out_f, reverse_padded(out_b, sorted_len_tensor)], dim=-1)
                layer_outputs.append(both if in_order else both[restore.to(inputs.device)])
            x_forward, x_backward = out_f, out_b
        if stateful:
            restore_dev = restore.to(inputs.device)
            finals = [(h[restore_dev], c[restore_dev]) for h, c in finals_forward + finals_backward]
            self._store_states(finals, batch)
        return layer_outputs
