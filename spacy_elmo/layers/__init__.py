"""The Thinc layers of the spaCy side, one per module: the biLM over Docs (``bilm_model``), the
listener (``listener``), the learned scalar mix (``scalar_mix``); ``units`` cuts Docs into what
the biLM runs and ``layer_cache`` keeps a frozen biLM's outputs. ``spacy_elmo.architectures``
composes them into the registered architectures."""
