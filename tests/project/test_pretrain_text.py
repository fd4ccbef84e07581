"""scripts/fetch_pretrain_text.py and scripts/text_markup.py: markup strippers, dev split, interleaving."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import fetch_pretrain_text as fetch  # noqa: E402
import text_markup as markup  # noqa: E402

PROSE = "The quick brown fox jumps over the lazy dog again and again."


def test_is_prose_keeps_sentences_and_drops_code_and_short_lines() -> None:
    assert markup.is_prose(PROSE)
    assert not markup.is_prose("Short line here.")
    assert not markup.is_prose("for (i = 0; i < n; i++) { x[i] = y[i] * 2; } /* loop */ return x;")
    assert not markup.is_prose("$ git commit -m foo --amend && git push origin HEAD:refs/for/main")


def test_rst_drops_literal_blocks_directives_and_headings() -> None:
    text = (
        "Title\n=====\n\n"
        "Use :func:`open` and ``read`` to load a file as shown in the example below::\n\n"
        "    f = open('x')\n    data = f.read()\n\n"
        ".. code-block:: c\n\n   int main(void) { return 0; }\n\n"
        ".. function:: spam(eggs)\n\n"
        "   Return the number of eggs that the `spam factory <https://example.org>`_ has made today.\n\n"
        "Back at the top level, this paragraph is **kept** as plain prose text.\n"
    )
    assert markup.rst_paragraphs(text) == [
        "Use open and read to load a file as shown in the example below:",
        "Return the number of eggs that the spam factory has made today.",
        "Back at the top level, this paragraph is kept as plain prose text.",
    ]


def test_markdown_html_roff_pod_strip_markup() -> None:
    md = "# Heading\n\nSee [the manual](http://x) for _all_ of the **details** you need here.\n\n```\ncode()\n```\n"
    assert markup.markdown_paragraphs(md) == ["See the manual for all of the details you need here."]
    page = "<html><head><title>t</title></head><body><p>Call <code>VACUUM</code> to reclaim the space of dead rows.</p>"
    page += "<pre>VACUUM FULL;</pre><p>Tiny.</p></body></html>"
    assert markup.html_paragraphs(page) == ["Call VACUUM to reclaim the space of dead rows."]
    roff = ".TH X 2\n.SH DESCRIPTION\n.BR open ()\n"
    roff += "opens the file named by \\fIpathname\\fP for reading.\n.nf\nint fd;\n.fi\n"
    assert markup.roff_paragraphs(roff) == ["open() opens the file named by pathname for reading."]
    pod = (
        "=head1 NAME\n\nThe C<print> function writes a list of strings to the L<filehandle|perlfunc>.\n\n    print 1;\n"
    )
    assert markup.pod_paragraphs(pod) == ["The print function writes a list of strings to the filehandle."]


def test_dict_stripper() -> None:
    entry = 'Abjure \\Ab*jure"\\, v. t. [L. abjurare.]\n'
    entry += "   1. To renounce upon oath; to forswear; to disavow.\n   [1913 Webster]"
    assert markup.dict_paragraphs(entry) == ["Abjure , v. t. 1. To renounce upon oath; to forswear; to disavow."]


def test_split_documents_sends_every_50th_to_dev_and_drops_repeats() -> None:
    documents = [[f"line {i}"] for i in range(100)]
    train, dev = fetch.split_documents(iter(documents))
    assert dev == [["line 49"], ["line 99"]] and len(train) == 98
    seen: set[int] = set()
    train, dev = fetch.split_documents(iter([["a", "b"], ["b"], ["c", "a"]]), seen)
    assert train == [["a", "b"], ["c"]] and dev == []


def test_interleave_is_seeded_and_keeps_documents_together() -> None:
    documents = [[f"{d}.{i}" for i in range(3)] for d in range(20)]
    lines = fetch.interleave(documents, seed=0)
    assert lines == fetch.interleave(documents, seed=0) != fetch.interleave(documents, seed=1)
    assert sorted(lines) == sorted(line for document in documents for line in document)
    starts = [lines[i].split(".")[0] for i in range(0, 60, 3)]
    assert [lines[i : i + 3] for i in range(0, 60, 3)] == [[f"{d}.{i}" for i in range(3)] for d in starts]
    assert starts != [str(d) for d in range(20)]
