"""A slow, literal NumPy reading of the ELMo spec, straight from the HDF5 arrays.

Independent of the package's weight conversion and batching: one sentence at a
time, one step at a time, TF layouts as stored. Used to cross-check model
variants no reference fixture covers (no skip connections, no clipping, tanh,
no highway, no projection, three layers).
"""

from __future__ import annotations

import h5py
import numpy as np

from spacy_elmo.bilm.chars import BOS_IDS, EOS_IDS, word_to_char_ids


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class NumpyElmo:
    def __init__(self, options: dict, weight_file: str) -> None:
        self.o = options
        with h5py.File(weight_file, "r") as f:
            self.w = {}
            f.visititems(lambda name, obj: self.w.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)

    def token(self, ids: np.ndarray) -> np.ndarray:
        w, cnn = self.w, self.o["char_cnn"]
        table = np.concatenate([np.zeros((1, w["char_embed"].shape[1]), np.float32), w["char_embed"]])
        x = table[ids]  # (50, e)
        feats = []
        for i, (width, _) in enumerate(cnn["filters"]):
            kernel = w[f"CNN/W_cnn_{i}"][0]  # (width, e, n)
            conv = np.stack([np.einsum("we,wen->n", x[t : t + width], kernel) for t in range(50 - width + 1)])
            feats.append((conv + w[f"CNN/b_cnn_{i}"]).max(0))
        h = np.concatenate(feats)
        h = np.maximum(h, 0) if cnn["activation"] == "relu" else np.tanh(h)
        for k in range(cnn.get("n_highway") or 0):
            g = _sigmoid(h @ w[f"CNN_high_{k}/W_carry"] + w[f"CNN_high_{k}/b_carry"])
            t = np.maximum(h @ w[f"CNN_high_{k}/W_transform"] + w[f"CNN_high_{k}/b_transform"], 0)
            h = g * t + (1 - g) * h
        if "CNN_proj/W_proj" in w:
            h = h @ w["CNN_proj/W_proj"] + w["CNN_proj/b_proj"]
        return h

    def sentence(self, tokens: list[str]) -> np.ndarray:
        """``(n_layers + 1, n, 2P)`` for one sentence from a zero state."""
        lstm = self.o["lstm"]
        ids = [BOS_IDS] + [word_to_char_ids(t) for t in tokens] + [EOS_IDS]
        x = np.stack([self.token(i) for i in ids])
        layers = [np.concatenate([x, x], -1)]
        per_dir = []
        for d in (0, 1):
            inp = x if d == 0 else x[::-1]
            outs = []
            for layer in range(lstm["n_layers"]):
                p = f"RNN_{d}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
                W, B, WP = self.w[p + "W_0"], self.w[p + "B"], self.w[p + "W_P_0"]
                C = WP.shape[0]
                h, c = np.zeros(WP.shape[1], np.float32), np.zeros(C, np.float32)
                out = []
                for t in range(len(inp)):
                    z = np.concatenate([inp[t], h]) @ W + B
                    i, j, f, o = z[:C], z[C : 2 * C], z[2 * C : 3 * C], z[3 * C :]
                    c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)
                    if lstm.get("cell_clip"):
                        c = np.clip(c, -lstm["cell_clip"], lstm["cell_clip"])
                    h = (_sigmoid(o) * np.tanh(c)) @ WP
                    if lstm.get("proj_clip"):
                        h = np.clip(h, -lstm["proj_clip"], lstm["proj_clip"])
                    out.append(h)
                out = np.stack(out)
                if lstm.get("use_skip_connections") and layer > 0:
                    out = out + inp
                outs.append(out if d == 0 else out[::-1])
                inp = out
            per_dir.append(outs)
        for layer in range(lstm["n_layers"]):
            layers.append(np.concatenate([per_dir[0][layer], per_dir[1][layer]], -1))
        return np.stack(layers)[:, 1:-1].astype(np.float32)
