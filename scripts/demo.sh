#!/usr/bin/env bash
# The main job: install; embed a text file with a reference-format biLM (the
# AllenNLP/bilm-tf test model shipped in tests/fixtures/elmo) into HDF5; then the
# spaCy project's demo workflow: fetch WNUT-16, train a small NER on the bundled
# ELMo, evaluate it, print predictions and contextual similarities.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh
mkdir -p demo_output
"$PYTHON" - <<'PY'
import json
from pathlib import Path

streams = json.loads(Path("tests/fixtures/elmo/sentences.json").read_text())
lines = [streams[k][i] for i in range(10) for k in range(3)]
Path("demo_output/sentences.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
PY
"$PYTHON" -m spacy_elmo embed demo_output/sentences.txt demo_output/embeddings.hdf5 \
  --options-file tests/fixtures/elmo/options.json --weight-file tests/fixtures/elmo/lm_weights.hdf5 \
  --batch-size 3 --state stateful
"$PYTHON" - <<'PY'
import h5py

with h5py.File("demo_output/embeddings.hdf5", "r") as f:
    print(f"{len(f)} datasets; line 0 has shape {f['0'].shape} (layers, tokens, 2P)")
PY
"$PYTHON" -m spacy project run demo
