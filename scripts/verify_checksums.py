"""Check downloaded files against the sha256 sums recorded in a `sha256sum`-format file.

Usage: python scripts/verify_checksums.py checksums.sha256 FILE [FILE ...]
Every FILE must be listed in the checksums file and match; a mismatch deletes nothing but exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spacy_elmo.weights_source import sha256_of


def read_checksums(path: Path) -> dict[str, str]:
    """{relative path: hex digest} from lines `<digest>  <path>`."""
    expected: dict[str, str] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ValueError(f"{path} line {line_number}: expected '<sha256>  <path>', got {line!r}")
        expected[name.strip()] = digest.lower()
    return expected


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    expected = read_checksums(Path(sys.argv[1]))
    failures = 0
    for name in sys.argv[2:]:
        path = Path(name)
        if name not in expected:
            print(f"FAIL {name}: no checksum recorded in {sys.argv[1]}")
            failures += 1
        elif not path.is_file():
            print(f"FAIL {name}: file missing")
            failures += 1
        elif (actual := sha256_of(path)) != expected[name]:
            print(f"FAIL {name}: sha256 {actual}, expected {expected[name]}")
            failures += 1
        else:
            print(f"OK   {name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
