"""Markup strippers for the pretraining text: each turns one file's source into prose paragraphs.

Every function takes the file's text and returns a list of paragraphs, each joined onto one line. Code,
tables, headings and other lines that are not prose are dropped here or by ``is_prose``, which every source
applies last.
"""

from __future__ import annotations

import html
import re

MIN_WORDS = 6


def clean(text: str) -> str:
    """Collapse runs of whitespace to one space."""
    return re.sub(r"\s+", " ", text).strip()


def blocks(text: str) -> list[str]:
    """Blank-line separated blocks, each with its line breaks kept."""
    return [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]


WORD = re.compile(r"^[\"'(]*[A-Za-z][a-z]*(?:['’-][A-Za-z]+)*[\"')]*[.,;:!?]?[\"')]*$")
CODE_CHARS = re.compile(r"[{}<>=_/\\|#$@\[\]]")


def is_prose(line: str, min_words: int = MIN_WORDS) -> bool:
    """A line that reads as prose: enough words, mostly plain words, few code characters."""
    tokens = line.split()
    if len(tokens) < min_words:
        return False
    plain = sum(1 for t in tokens if WORD.match(t))
    return plain >= 0.6 * len(tokens) and len(CODE_CHARS.findall(line)) <= 0.05 * len(line)


def prose(paragraphs: list[str]) -> list[str]:
    """Cleaned paragraphs that pass ``is_prose``."""
    return [p for p in (clean(x) for x in paragraphs) if is_prose(p)]


# reStructuredText (Sphinx sources: the kernel's Documentation, Python's docs)
RST_SKIP_DIRECTIVES = re.compile(
    r"\.\.\s+(code-block|code|sourcecode|highlight|literalinclude|doctest|testcode|testoutput|testsetup|"
    r"productionlist|toctree|kernel-doc|kernel-abi|kernel-feat|table|list-table|csv-table|flat-table|"
    r"image|figure|raw|math|only|include|index|graphviz|moduleauthor|sectionauthor|highlightlang|"
    r"c:|cpp:|py:|\|)"
)
RST_ROLE = re.compile(r":[\w:.+-]+:`([^`<]*?)(?:\s*<[^`>]*>)?`")
RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]*>`_+")


def rst_inline(text: str) -> str:
    text = RST_ROLE.sub(r"\1", text)
    text = RST_LINK.sub(r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*", r"\1", text)
    text = re.sub(r"\|(\w[\w ]*)\|_?", r"\1", text)
    text = re.sub(r"\[#?\w*\]_", "", text)
    return text.replace("\\", "")


def indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def rst_paragraphs(text: str) -> list[str]:
    """Prose of an rst file: literal blocks (after ``::``), code/table/toctree directives, headings dropped."""
    out: list[str] = []
    skip_deeper_than: int | None = None  # inside a literal block or skipped directive: its owner's indent
    for block in blocks(text):
        lines = block.split("\n")
        first = next(line for line in lines if line.strip())
        level = indent(first)
        if skip_deeper_than is not None:
            if level > skip_deeper_than:
                continue
            skip_deeper_than = None
        stripped = first.strip()
        if RST_SKIP_DIRECTIVES.match(stripped) or re.match(r"\.\.\s+\w[\w:-]*::\s*$", stripped):
            skip_deeper_than = level
            continue
        kept = []
        for line in lines:
            s = line.strip()
            if re.fullmatch(r"([=\-~^\"'`#*+_.:])\1{2,}", s) or s.startswith(("+-", "+=", "|", ".. ")):
                continue  # heading underline, table row, comment or directive line
            kept.append(s)
        paragraph = rst_inline(" ".join(kept))
        if block.rstrip().endswith("::"):
            skip_deeper_than = level
            paragraph = re.sub(r"::$", ":", paragraph.rstrip()) if not paragraph.rstrip().endswith(" ::") else ""
        out.append(paragraph)
    return prose(out)


# Markdown (An Anarchist FAQ, Node.js docs)
def markdown_paragraphs(text: str) -> list[str]:
    """Prose of a Markdown file: fenced and indented code, headings, tables and HTML comments dropped."""
    text = re.sub(r"```.*?```", "\n\n", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    out = []
    for block in blocks(text):
        if block.startswith(("    ", "\t", "#", "|")):
            continue
        s = re.sub(r"(?m)^\s*(?:>\s*)+", "", block)
        s = re.sub(r"(?m)^\s*(?:[*+-]|\d+\.)\s+", "", s)
        s = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", s)
        s = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", s)
        s = re.sub(r"`([^`]*)`", r"\1", s)
        s = re.sub(r"(\*\*|__|\*|(?<!\w)_)(\S(?:.*?\S)?)\1(?!\w)", r"\2", s)
        s = re.sub(r"<[^>]+>", "", s)
        out.append(html.unescape(s))
    return prose(out)


# HTML (PostgreSQL, Django, Debian handbook/reference)
HTML_DROP = re.compile(r"<(script|style|pre|head|table|nav)\b.*?</\1\s*>", re.S | re.I)
HTML_BREAK = re.compile(r"</?(p|div|li|ul|ol|dd|dt|dl|h\d|br|tr|td|th|blockquote|section|title)\b[^>]*>", re.I)


def html_paragraphs(text: str) -> list[str]:
    """Prose of an HTML page: pre/script/table/nav elements dropped, block elements end paragraphs."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = HTML_DROP.sub("\n\n", text)
    text = HTML_BREAK.sub("\n\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    return prose([html.unescape(b) for b in blocks(text)])


# roff man pages
ROFF_FONT_MACROS = re.compile(r"^\.(B|I|BR|BI|IR|RB|IB|RI|SM|SB)\s+(.*)$")
ROFF_BREAK = re.compile(r"^\.(PP|P|LP|TP|IP|SH|SS|sp|br|HP|RS|RE|in|TH|TQ)\b")


def roff_unescape(text: str) -> str:
    text = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", text)
    text = re.sub(r"\\\*(\[[^\]]*\]|\(..|.)", "", text)
    text = text.replace("\\(em", " - ").replace("\\(en", "-").replace("\\(aq", "'")
    text = re.sub(r"\\\((lq|rq|dq)", '"', text)
    text = re.sub(r"\\\(..", "", text)
    text = re.sub(r"\\\[[^\]]*\]", "", text)
    text = text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "").replace("\\ ", " ")
    return re.sub(r"\\[|^%:/,0~]", "", text)


def roff_paragraphs(text: str) -> list[str]:
    """Prose of a man page: requests dropped, font macros kept as text, .nf/.EX examples dropped."""
    out: list[str] = []
    current: list[str] = []
    literal = False
    for line in text.split("\n"):
        if line.startswith((".nf", ".EX")):
            literal = True
        elif line.startswith((".fi", ".EE")):
            literal = False
            continue
        if literal or line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        font = ROFF_FONT_MACROS.match(line)
        if font:
            words = re.findall(r'"([^"]*)"|(\S+)', font.group(2))
            joiner = "" if len(font.group(1)) == 2 else " "
            current.append(joiner.join(a or b for a, b in words))
        elif ROFF_BREAK.match(line) or not line.strip():
            out.append(" ".join(current))
            current = []
        elif line.startswith((".", "'")):
            continue
        else:
            current.append(line)
    out.append(" ".join(current))
    return prose([roff_unescape(p) for p in out])


# Perl POD
def pod_inline(text: str) -> str:
    for _ in range(3):
        text = re.sub(r"[A-Z]<<+\s+(.*?)\s+>>+", r"\1", text)
        text = re.sub(r"L<([^<>|]*)\|[^<>]*>", r"\1", text)
        text = re.sub(r"E<gt>", ">", text)
        text = re.sub(r"E<lt>", "<", text)
        text = re.sub(r"[XZ]<[^<>]*>", "", text)
        text = re.sub(r"[A-Z]<([^<>]*)>", r"\1", text)
    return text


def pod_paragraphs(text: str) -> list[str]:
    """Prose of a POD file: commands (=head, =item ...) and verbatim (indented) paragraphs dropped."""
    out = []
    in_pod = True
    for block in blocks(text):
        if block.startswith("=cut"):
            in_pod = False
        if block.startswith("=pod") or block.startswith("=head"):
            in_pod = True
        if not in_pod or block.startswith(("=", " ", "\t")):
            continue
        out.append(pod_inline(block))
    return prose(out)


# AsciiDoc (git's documentation)
def asciidoc_paragraphs(text: str) -> list[str]:
    """Prose of an AsciiDoc file: delimited (----, ....) and indented blocks, option terms and titles dropped."""
    text = re.sub(r"(?ms)^(-{4,}|\.{4,}|\+{4,}|/{4,})\s*$.*?^\1\s*$", "\n", text)
    out = []
    for block in blocks(text):
        if block.startswith((" ", "\t", "[", "=")):
            continue
        lines = [
            line
            for line in block.split("\n")
            if not re.match(r"^(.*::|[=\-~^+]{3,}|\+|\[.*\]|:\w[\w-]*:.*|\.\w.*)\s*$", line)
        ]
        s = " ".join(lines)
        s = re.sub(r"linkgit:([\w-]+)\[\d\]", r"\1", s)
        s = re.sub(r"(?<!\w)[`'*_]([^`'*_]+)[`'*_](?!\w)", r"\1", s)
        out.append(s.replace("{litdd}", "--"))
    return prose(out)


# dictd dictionaries (GCIDE, FOLDOC, Jargon File)
def dict_paragraphs(text: str) -> list[str]:
    """Definitions of a dictd file: pronunciations (\\Ab*jure\\), etymologies and source tags dropped."""
    out = []
    for block in blocks(text):
        s = re.sub(r"\\[^\\\n]*\\", "", block)
        s = re.sub(r"\[[^\]]*\]", "", s)
        s = re.sub(r"<[^>]*>", "", s)
        s = re.sub(r"\{([^{}]*)\}", r"\1", s)
        s = re.sub(r"\(\d{4}-\d\d-\d\d\)", "", s)
        s = re.sub(r"^\s*\d+\.\s+", "", s)
        out.append(s)
    return prose(out)
