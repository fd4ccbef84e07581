#!/usr/bin/env bash
# Installs spacy_elmo (editable) and its test tools. torch is pinned: on these
# machines torch==2.13.0 is a CPU build from local disk, while an unpinned torch
# would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"
