"""Training ner and textcat on ELMo through listeners, inline variants and replace_listeners."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch
from thinc.api import set_dropout_rate

from spacy_elmo.layers.bilm_model import get_bilm
from spacy_elmo.layers.listener import ElmoListener

from ..elmo_helpers import (
    LAYER_WIDTH,
    elmo_config,
)
from ..training_data import ner_examples, textcat_examples

LISTENER = {"@architectures": "spacy_elmo.ElmoListener.v1", "upstream": "elmo", "width": 32}
NER_MODEL = {
    "@architectures": "spacy.TransitionBasedParser.v2",
    "state_type": "ner",
    "extra_state_tokens": False,
    "hidden_width": 32,
    "maxout_pieces": 2,
    "use_upper": True,
    "tok2vec": LISTENER,
}
TEXTCAT_MODEL = {
    "@architectures": "spacy.TextCatReduce.v1",
    "exclusive_classes": True,
    "use_reduce_first": False,
    "use_reduce_last": False,
    "use_reduce_max": True,
    "use_reduce_mean": True,
    "tok2vec": LISTENER,
}


def bilm_state(nlp: Language) -> dict[str, torch.Tensor]:
    bilm = get_bilm(nlp.get_pipe("elmo").model)
    assert bilm is not None
    return {name: tensor.detach().clone() for name, tensor in bilm.state_dict().items()}


def train(
    nlp: Language,
    examples: list[Example],
    component: str,
    epochs: int,
    learn_rate: float = 0.01,
    drop: float = 0.1,
    batch_size: int = 8,
    seed: int = 0,
) -> list[float]:
    """Per-epoch loss of ``component``."""
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    history = []
    for _ in range(epochs):
        random.shuffle(examples)
        losses: dict[str, float] = {}
        for batch in minibatch(examples, size=batch_size):
            nlp.update(batch, sgd=optimizer, losses=losses, drop=drop)
        history.append(float(losses[component]))
    return history


def ner_pipeline(weights_dir: Path, frozen: bool = True) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config=elmo_config(weights_dir, frozen=frozen))
    nlp.add_pipe("ner", config={"model": NER_MODEL})
    return nlp


def test_ner_trains_on_a_frozen_elmo(weights_dir: Path) -> None:
    # Deterministic: every random source (random, NumPy, torch) is seeded before anything is built.
    # Over seeds 0-23 ents_f was 0.40-0.67 (mean 0.60) and the last/first epoch loss 0.29-0.43;
    # seed 0 gives 0.55 and 0.34. The bounds below pass for every one of those seeds.
    fix_random_seed(0)
    nlp = ner_pipeline(weights_dir)
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    before = bilm_state(nlp)
    history = train(nlp, examples, "ner", epochs=10, seed=0)
    assert history[-1] < 0.5 * history[0], history
    after = bilm_state(nlp)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the listener's own scalar mix learned something
    mix = next(node for node in nlp.get_pipe("ner").model.walk() if node.name == "elmo_scalar_mix")
    assert not np.allclose(mix.get_param("W"), 0.0)
    doc = nlp("Angela Merkel visited Paris on Monday.")
    assert doc.tensor.shape == (7, LAYER_WIDTH)
    scores = nlp.evaluate(ner_examples(nlp))
    assert scores["ents_f"] > 0.4, scores


def test_training_with_elmo_as_a_frozen_annotating_component(weights_dir: Path) -> None:
    # spaCy's [training] frozen_components + annotating_components: elmo.update never runs,
    # the listener reads what the component set on the Docs.
    nlp = ner_pipeline(weights_dir)
    examples = ner_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    listener = next(n for n in nlp.get_pipe("ner").model.walk() if isinstance(n, ElmoListener))
    history = []
    for _ in range(6):
        losses: dict[str, float] = {}
        for batch in minibatch(examples, size=8):
            nlp.update(batch, sgd=optimizer, losses=losses, exclude=["elmo"], annotates=["elmo"])
        history.append(losses["ner"])
    assert listener._batch_id is None and "elmo" not in losses
    assert history[-1] < history[0], history


def test_fine_tuning_changes_the_bilm(weights_dir: Path) -> None:
    # Seeded before anything is built: the NER weights came from whatever random state earlier
    # tests left. With 6 epochs last/first was 0.62-1.03 over seeds 0-11 (it failed in CI);
    # with 10 it is 0.50-0.79, so the bound below is not noise.
    fix_random_seed(0)
    nlp = ner_pipeline(weights_dir, frozen=False)
    examples = ner_examples(nlp)[:16]
    nlp.initialize(lambda: examples)
    before = bilm_state(nlp)
    history = train(nlp, examples, "ner", epochs=10, learn_rate=0.003)
    after = bilm_state(nlp)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "lstm.forward_layers.0.input_weight" in changed and "token_encoder.projection_weight" in changed
    assert np.mean(history[-2:]) < 0.9 * np.mean(history[:2]), history


def test_textcat_trains_on_elmo(weights_dir: Path) -> None:
    # Seeded before anything is built. Over seeds 0-7, 30 epochs gave a loss ratio of 0.61-0.87
    # and cats_score 0.52-0.75: the old bounds held for 5 of the 8. Over seeds 0-15, 100 epochs
    # give a ratio of 0.33-0.59 and cats_score above 0.6 for 14 of the 16 (seed 0: 0.90).
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config=elmo_config(weights_dir))
    no_projection = {**TEXTCAT_MODEL, "tok2vec": {**LISTENER, "width": None}}
    nlp.add_pipe("textcat", config={"model": no_projection})
    examples = textcat_examples(nlp)
    # The fixture biLM is a tiny test model whose features differ little between these
    # sentences (spaCy's HashEmbedCNN fits them in a few epochs): progress is slow but real.
    history = train(nlp, examples, "textcat", epochs=100, learn_rate=0.03, drop=0.0)
    assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5]), history
    scores = nlp.evaluate(textcat_examples(nlp))
    assert scores["cats_score"] > 0.6, scores


def test_prediction_computes_what_training_computed(weights_dir: Path) -> None:
    nlp = ner_pipeline(weights_dir)
    examples = ner_examples(nlp)
    train(nlp, examples, "ner", epochs=2)
    elmo = nlp.get_pipe("elmo")
    head = next(n for n in nlp.get_pipe("ner").model.walk() if n.layers and isinstance(n.layers[0], ElmoListener))
    listener = head.layers[0]
    texts = ["Serena Williams won the final in Melbourne.", "", "Toyota builds trucks in Japan."]
    set_dropout_rate(head, 0.0)
    docs = [nlp.make_doc(t) for t in texts]
    outputs, _ = elmo.model.begin_update(docs)
    listener.receive(ElmoListener.get_batch_id(docs), outputs, lambda d: [])
    trained, _ = head.begin_update(docs)
    predicted = head.predict(list(elmo.pipe(nlp.make_doc(t) for t in texts)))
    assert len(trained) == len(predicted) == 3
    for a, b in zip(trained, predicted, strict=True):
        assert a.shape == b.shape and a.shape[1] == 32
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Docs that never went through the elmo component are computed by the linked upstream.
    unannotated = head.predict([nlp.make_doc(t) for t in texts])
    for a, b in zip(unannotated, predicted, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_replace_listeners_gives_the_same_predictions_and_saves(weights_dir: Path, tmp_path: Path) -> None:
    nlp = ner_pipeline(weights_dir)
    examples = ner_examples(nlp)
    train(nlp, examples, "ner", epochs=6)
    texts = [eg.reference.text for eg in examples[:8]]
    expected = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    nlp.replace_listeners("elmo", "ner", ["model.tok2vec"])
    assert nlp.get_pipe("elmo").listeners == []
    assert nlp.config["components"]["ner"]["model"]["tok2vec"]["@architectures"] == "spacy-elmo.Elmo.v2"
    nlp.remove_pipe("elmo")
    got = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert got == expected
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in loaded.pipe(texts)] == expected


def test_inline_elmo_as_tok2vec_embed(weights_dir: Path) -> None:
    nlp = spacy.blank("en")
    embed = {"@architectures": "spacy_elmo.Elmo.v1", "weights": str(weights_dir), "width": 24}
    encode = {
        "@architectures": "spacy.MaxoutWindowEncoder.v2",
        "width": 24,
        "depth": 1,
        "window_size": 1,
        "maxout_pieces": 2,
    }
    nlp.add_pipe("tok2vec", config={"model": {"@architectures": "spacy.Tok2Vec.v2", "embed": embed, "encode": encode}})
    nlp.initialize()
    doc = nlp("Inline ELMo feeds a spaCy tok2vec .")
    assert doc.tensor.shape == (7, 24)
    assert np.isfinite(doc.tensor).all() and np.abs(doc.tensor).sum() > 0


def test_listener_drops_the_batch_after_backprop_and_declares_its_width(weights_dir: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config=elmo_config(weights_dir))
    listener_v2 = {"@architectures": "spacy-elmo.ElmoListener.v2", "upstream": "elmo", "width": None}
    nlp.add_pipe("textcat", config={"model": {**TEXTCAT_MODEL, "tok2vec": listener_v2}})
    examples = textcat_examples(nlp)[:4]
    nlp.initialize(lambda: examples)
    tok2vec = nlp.get_pipe("textcat").model.get_ref("tok2vec")
    assert tok2vec.get_dim("nO") == LAYER_WIDTH  # 2P: no projection
    listener = next(n for n in tok2vec.walk() if isinstance(n, ElmoListener))
    nlp.update(examples, sgd=nlp.create_optimizer())
    assert listener._outputs is None and listener._backprop is None and listener._batch_id is None


def test_doc_layers_mix_keeps_the_layers_a_listener_reads(weights_dir: Path) -> None:
    """With a listener in the pipeline, "mix" still keeps every layer: the listener reads them at prediction."""
    pipelines = {}
    for doc_layers in ("all", "mix"):
        nlp = spacy.blank("en")
        nlp.add_pipe("elmo", config=elmo_config(weights_dir, doc_layers=doc_layers))
        nlp.add_pipe("ner", config={"model": NER_MODEL})
        train(nlp, ner_examples(nlp), "ner", epochs=2)
        pipelines[doc_layers] = nlp
    texts = [eg.reference.text for eg in ner_examples(pipelines["all"])[:6]]
    assert pipelines["mix"].get_pipe("elmo").keeps_layers
    for full, lean in zip(pipelines["all"].pipe(texts), pipelines["mix"].pipe(texts), strict=True):
        np.testing.assert_array_equal(lean._.elmo["layers"], full._.elmo["layers"])
        assert [(e.start, e.end, e.label_) for e in lean.ents] == [(e.start, e.end, e.label_) for e in full.ents]
    # Without the listener (replaced by an inline biLM), the elmo component keeps only the mix.
    lean_nlp = pipelines["mix"]
    lean_nlp.replace_listeners("elmo", "ner", ["model.tok2vec"])
    assert not lean_nlp.get_pipe("elmo").keeps_layers
    doc = lean_nlp(texts[0])
    assert "layers" not in doc._.elmo and doc._.elmo["vectors"].shape == (len(doc), LAYER_WIDTH)
