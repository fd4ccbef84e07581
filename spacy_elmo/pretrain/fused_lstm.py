"""Training-time LSTM layer for both directions at once, with a hand-written backward pass.

The same function as two ``bilm.lstm.ProjectedLstmLayer`` calls over full windows (no row ends early, as in
pretraining), computed with fewer, larger operations: the two directions' products of each step run as one
batched product, the input gates of all steps as one product before the loop, and in the backward pass the
weight and input gradients as one product each over all steps (autograd would add up one small product per
step). Only the recurrence itself (one gate product and one projection per step, and their transposes going
back) stays step by step.
"""

from __future__ import annotations

from typing import Any

import torch

from ..bilm.lstm import ProjectedLstmLayer, State


def _in(x: torch.Tensor, low: torch.dtype | None) -> torch.Tensor:
    """``x`` as the matrix products take it: in ``low`` precision, or as it is (float32)."""
    return x if low is None else x.to(low)


def _product(a: torch.Tensor, b: torch.Tensor, low: torch.dtype | None) -> torch.Tensor:
    """``a @ b`` (batched) in float32, or with ``a`` rounded to ``low`` (``b`` already is): a float32 result."""
    if low is None:
        return torch.bmm(a, b)
    return torch.bmm(a.to(low), b).float()


class _BiLstmLayer(torch.autograd.Function):
    """``d`` (here 2) independent projected LSTMs over ``T`` steps; see ``bidirectional_layer``.

    Layouts: what the weight gradients read as rows is direction-major (``gates``, ``cell_outputs``,
    ``outputs``, the gate and projection gradients: ``(d, T, B, .)``, each direction's ``T * B`` rows one
    matrix), so no tensor is transposed into a copy; the cell states and the projection's output, read only
    step by step, are time-major (``(T, d, B, .)``, each step's slice contiguous).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        inputs: torch.Tensor,
        h0: torch.Tensor,
        c0: torch.Tensor,
        input_weight: torch.Tensor,
        hidden_weight: torch.Tensor,
        bias: torch.Tensor,
        projection_weight: torch.Tensor,
        cell_clip: float | None,
        proj_clip: float | None,
        low: torch.dtype | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d, steps, batch, in_dim = inputs.shape
        C = hidden_weight.shape[2] // 4
        P = projection_weight.shape[2]
        inputs = inputs.float().contiguous()
        h0, c0 = h0.float(), c0.float()
        product_hidden, product_projection = _in(hidden_weight, low), _in(projection_weight, low)
        # (d, T, B, 4C): every step's input gates, bias included, in one product per direction; each step
        # adds its recurrent product in place and applies the activations there.
        gates = _product(inputs.view(d, steps * batch, in_dim), _in(input_weight, low), low)
        gates = gates.add_(bias[:, None, :]).view(d, steps, batch, 4 * C)
        cells = inputs.new_empty(steps, d, batch, C)  # before the clip
        cells_clipped = inputs.new_empty(steps, d, batch, C) if cell_clip is not None else cells
        tanh_cells = inputs.new_empty(steps, d, batch, C)
        cell_outputs = inputs.new_empty(d, steps, batch, C)  # o * tanh(c), the projection's input
        projected = inputs.new_empty(steps, d, batch, P) if proj_clip is not None else None  # before the clip
        outputs = inputs.new_empty(d, steps, batch, P)
        h, c = h0, c0
        for t in range(steps):
            g = gates[:, t]
            if low is None:
                g.baddbmm_(h, hidden_weight)
            else:
                g.add_(_product(h, product_hidden, low))
            # TF gate order i, j, f, o
            g[..., :C].sigmoid_()
            g[..., C : 2 * C].tanh_()
            g[..., 2 * C :].sigmoid_()
            i, j, f, o = g.split(C, dim=-1)
            torch.mul(f, c, out=cells[t]).addcmul_(i, j)
            c = cells[t]
            if cell_clip is not None:
                c = torch.clamp(c, -cell_clip, cell_clip, out=cells_clipped[t])
            torch.tanh(c, out=tanh_cells[t])
            m = torch.mul(o, tanh_cells[t], out=cell_outputs[:, t])
            h = outputs[:, t] if projected is None else projected[t]
            h = torch.bmm(m, projection_weight, out=h) if low is None else h.copy_(_product(m, product_projection, low))
            if projected is not None:
                h = torch.clamp(h, -proj_clip, proj_clip, out=outputs[:, t])
        ctx.save_for_backward(
            inputs, h0, c0, input_weight, hidden_weight, projection_weight,
            gates, cells, cells_clipped, tanh_cells, cell_outputs, projected, outputs,
        )  # fmt: skip
        ctx.cell_clip = cell_clip  # the projection clip's mask is where outputs == projected
        ctx.low = low
        return outputs, h.clone(), c.clone()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_outputs: torch.Tensor | None, grad_h: torch.Tensor | None, grad_c: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        (
            inputs, h0, c0, input_weight, hidden_weight, projection_weight,
            gates, cells, cells_clipped, tanh_cells, cell_outputs, projected, outputs,
        ) = ctx.saved_tensors  # fmt: skip
        cell_clip = ctx.cell_clip
        low = ctx.low
        d, steps, batch, in_dim = inputs.shape
        C = hidden_weight.shape[2] // 4
        P = projection_weight.shape[2]
        dh = grad_h if grad_h is not None else h0.new_zeros(d, batch, P)
        dc = grad_c if grad_c is not None else c0.new_zeros(d, batch, C)
        hidden_t = _in(hidden_weight.transpose(1, 2), low).contiguous()
        projection_t = _in(projection_weight.transpose(1, 2), low).contiguous()
        grad_gates = gates.new_empty(d, steps, batch, 4 * C)
        # With ``low``: each step's gate gradient rounded once, for its product and for the weight gradients.
        grad_gates_low = grad_gates if low is None else gates.new_empty(d, steps, batch, 4 * C, dtype=low)
        grad_projected = outputs.new_empty(d, steps, batch, P)
        derivatives = gates.new_empty(d, batch, 4 * C)
        one = gates.new_ones(())
        # Step by step, each step's values still in cache: activation derivatives and clip masks
        # (``torch.clamp`` passes the gradient where the value is within the bounds, bounds included,
        # i.e. where clipping left it unchanged).
        for t in reversed(range(steps)):
            if grad_outputs is None:
                gp = grad_projected[:, t].copy_(dh)
            else:
                gp = torch.add(grad_outputs[:, t], dh, out=grad_projected[:, t])
            if projected is not None:
                gp.mul_(outputs[:, t] == projected[t])
            dm = _product(gp, projection_t, low)
            g = gates[:, t]
            i, j, f, o = g.split(C, dim=-1)
            gg = grad_gates[:, t]
            di, dj, df, do = gg.split(C, dim=-1)
            tanh_c = tanh_cells[t]
            torch.mul(dm, tanh_c, out=do)
            dcell = torch.addcmul(dc, dm.mul_(o), torch.addcmul(one, tanh_c, tanh_c, value=-1.0))
            if cell_clip is not None:
                dcell.mul_(cells_clipped[t] == cells[t])
            c_prev = c0 if t == 0 else cells_clipped[t - 1]
            torch.mul(dcell, j, out=di)
            torch.mul(dcell, i, out=dj)
            torch.mul(dcell, c_prev, out=df)
            # s (1 - s) for the sigmoid gates i, f, o; 1 - tanh^2 for j
            torch.addcmul(g, g, g, value=-1.0, out=derivatives)
            torch.addcmul(one, j, j, value=-1.0, out=derivatives[..., C : 2 * C])
            gg.mul_(derivatives)
            dc = dcell.mul_(f)
            dh = torch.bmm(gg, hidden_t) if low is None else torch.bmm(grad_gates_low[:, t].copy_(gg), hidden_t).float()
        rows = steps * batch
        # (d, T*B, .): each direction's rows in (t, b) order, as the inputs'
        grad_gates_rows = grad_gates.view(d, rows, 4 * C)
        # Both weight gradients of the gates in one product: rows [x_t, h_{t-1}] (d, T*B, in + P)
        gate_inputs = inputs.new_empty(d, steps, batch, in_dim + P)
        gate_inputs[..., :in_dim] = inputs
        gate_inputs[:, 0, :, in_dim:] = h0
        gate_inputs[:, 1:, :, in_dim:] = outputs[:, :-1]
        grad_gates_low = grad_gates_low.view(d, rows, 4 * C)
        grad_gate_weights = _product(gate_inputs.view(d, rows, in_dim + P).transpose(1, 2), grad_gates_low, low)
        grad_input_weight, grad_hidden_weight = grad_gate_weights.split([in_dim, P], dim=1)
        grad_bias = grad_gates_rows.sum(1)
        cell_output_rows = cell_outputs.view(d, rows, C)
        grad_projected_rows = grad_projected.view(d, rows, P)
        grad_projection_weight = _product(cell_output_rows.transpose(1, 2), _in(grad_projected_rows, low), low)
        grad_inputs = _product(grad_gates_low, _in(input_weight.transpose(1, 2), low).contiguous(), low)
        grad_inputs = grad_inputs.view(d, steps, batch, in_dim)
        return (
            grad_inputs, dh, dc, grad_input_weight, grad_hidden_weight, grad_bias, grad_projection_weight,
            None, None, None,
        )  # fmt: skip


def bidirectional_layer(
    layers: tuple[ProjectedLstmLayer, ProjectedLstmLayer], inputs: torch.Tensor, initial: tuple[State, State]
) -> tuple[torch.Tensor, tuple[State, State]]:
    """Both directions' ``ProjectedLstmLayer.forward`` over full windows, with gradients.

    Args:
        layers: the forward and backward direction's layer (same sizes and clips).
        inputs: ``(2, T, B, in)``, time-major, direction ``k`` for ``layers[k]``.
        initial: per direction ``(h (B, P), c (B, C))``.

    Returns:
        outputs ``(2, T, B, P)`` and per direction the final ``(h, c)``.
    """
    first, second = layers
    input_weight = torch.stack([first.input_weight, second.input_weight])
    hidden_weight = torch.stack([first.hidden_weight, second.hidden_weight])
    bias = torch.stack([first.bias + first.forget_offset, second.bias + second.forget_offset])
    projection_weight = torch.stack([first.projection_weight, second.projection_weight])
    h0 = torch.stack([initial[0][0], initial[1][0]])
    c0 = torch.stack([initial[0][1], initial[1][1]])
    # Under CPU autocast (``--precision bfloat16``) the products run in its dtype, all else in float32.
    low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    with torch.autocast("cpu", enabled=False):
        outputs, h, c = _BiLstmLayer.apply(
            inputs, h0, c0, input_weight, hidden_weight, bias, projection_weight, first.cell_clip, first.proj_clip, low
        )
    return outputs, ((h[0], c[0]), (h[1], c[1]))
