"""Nothing read from a file runs code: the package never unpickles (the behaviour is tested in
test_pretrain.py::test_a_planted_checkpoint_runs_no_code); this guards the source against a regression."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "spacy_elmo"


def test_no_unpickling_anywhere_in_the_package() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for call in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", source):
            if "weights_only=True" not in call.group(0):
                offenders.append(f"{path.name}: {call.group(0)}")
        for pattern in (r"pickle\.loads?\(", r"weights_only=False", r"allow_pickle=True", r"\bdill\b", r"joblib\.load"):
            offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, source)]
    assert offenders == []
    assert "weights_only=True" in (PACKAGE / "pretrain" / "train.py").read_text(encoding="utf-8")
