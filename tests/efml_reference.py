"""A literal NumPy (float64) reading of how ELMoForManyLangs computes, written from the format's
description (tests/fixtures/efml/README.md), independent of ``spacy_elmo.bilm``.

It works on their files as they are: dictionaries parsed line by line, state dicts in their
layout (AllenNLP's highway and LSTM: torch gate order i, f, g, o, the forget bias inside the
bias), one token and one time step at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def read_dic(path: Path) -> dict[str, int]:
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.strip().split("\t")
        if len(fields) == 1:
            fields.insert(0, "\u3000")
        entries[fields[0]] = int(fields[1])
    return entries


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class LiteralEfml:
    def __init__(self, model_dir: Path, config: dict) -> None:
        self.config = config
        embedder = config["token_embedder"]
        self.max_chars = embedder["max_characters_per_token"]
        self.chars = read_dic(model_dir / "char.dic") if embedder["char_dim"] else None
        self.words = read_dic(model_dir / "word.dic") if embedder["word_dim"] else None
        load = lambda name: {  # noqa: E731
            k: v.double().numpy() for k, v in torch.load(model_dir / name, weights_only=True).items()
        }
        self.tok = load("token_embedder.pkl")
        self.enc = load("encoder.pkl")

    def token_vector(self, token: str) -> np.ndarray:
        """``[word emb; highway(max-pooled CNN)]`` projected: the token layer (P,)."""
        t = self.tok
        parts = []
        if self.words is not None:
            parts.append(t["word_emb_layer.embedding.weight"][self.words.get(token, self.words["<oov>"])])
        if self.chars is not None:
            c = self.chars
            ids = [c["<pad>"]] * self.max_chars
            ids[0] = c["<eow>"]  # their code swaps the names of <bow> and <eow>
            if token in ("<bos>", "<eos>"):
                ids[1], ids[2] = c[token], c["<bow>"]
            else:
                for k, ch in enumerate(token):
                    ids[k + 1] = c.get(ch, c["<oov>"])
                ids[len(token) + 1] = c["<bow>"]
            x = t["char_emb_layer.embedding.weight"][ids]  # (L, e)
            features = []
            for i, (width, _) in enumerate(self.config["token_embedder"]["filters"]):
                w, b = t[f"convolutions.{i}.weight"], t[f"convolutions.{i}.bias"]  # (n, e, width)
                windows = [np.einsum("ew,new->n", x[s : s + width].T, w) + b for s in range(self.max_chars - width + 1)]
                pooled = np.max(windows, axis=0)
                act = self.config["token_embedder"]["activation"]
                features.append(np.maximum(pooled, 0) if act == "relu" else np.tanh(pooled))
            h = np.concatenate(features)
            nf = h.shape[0]
            for k in range(self.config["token_embedder"]["n_highway"]):
                projected = t[f"highways._layers.{k}.weight"] @ h + t[f"highways._layers.{k}.bias"]
                nonlinear, gate = np.maximum(projected[:nf], 0), sigmoid(projected[nf:])
                h = gate * h + (1 - gate) * nonlinear
            parts.append(h)
        return t["projection.weight"] @ np.concatenate(parts) + t["projection.bias"]

    def _lstm(self, prefix: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        e, enc = self.enc, self.config["encoder"]
        C, P = enc["dim"], enc["projection_dim"]
        h, c = np.zeros(P), np.zeros(C)
        outputs = []
        for x in inputs:
            z = (
                e[f"{prefix}.input_linearity.weight"] @ x
                + e[f"{prefix}.state_linearity.weight"] @ h
                + e[f"{prefix}.state_linearity.bias"]
            )
            i, f, g, o = sigmoid(z[:C]), sigmoid(z[C : 2 * C]), np.tanh(z[2 * C : 3 * C]), sigmoid(z[3 * C :])
            c = i * g + f * c
            if enc["cell_clip"]:
                c = np.clip(c, -enc["cell_clip"], enc["cell_clip"])
            h = e[f"{prefix}.state_projection.weight"] @ (o * np.tanh(c))
            if enc["proj_clip"]:
                h = np.clip(h, -enc["proj_clip"], enc["proj_clip"])
            outputs.append(h)
        return outputs

    def layers(self, sentence: list[str]) -> np.ndarray:
        """``(n_layers + 1, n, 2P)`` for one sentence from a zero state, boundaries dropped."""
        tokens = ["<bos>"]
        for word in sentence:
            tokens.append(word[: self.max_chars - 2] if len(word) + 2 > self.max_chars else word)
        tokens.append("<eos>")
        x = [self.token_vector(token) for token in tokens]
        result = [np.concatenate([v, v], axis=-1) for v in [np.stack(x)]]
        forward, backward = x, x[::-1]
        for layer in range(self.config["encoder"]["n_layers"]):
            new_forward = self._lstm(f"forward_layer_{layer}", forward)
            new_backward = self._lstm(f"backward_layer_{layer}", backward)
            if layer > 0:
                new_forward = [a + b for a, b in zip(new_forward, forward, strict=True)]
                new_backward = [a + b for a, b in zip(new_backward, backward, strict=True)]
            forward, backward = new_forward, new_backward
            result.append(np.concatenate([np.stack(forward), np.stack(backward[::-1])], axis=-1))
        return np.stack(result)[:, 1:-1]


def literal_model(model_dir: Path) -> LiteralEfml:
    """For a directory whose config.json points at a network config inside it."""
    reference = json.loads((model_dir / "config.json").read_text())["config_path"]
    return LiteralEfml(model_dir, json.loads((model_dir / reference).read_text()))
