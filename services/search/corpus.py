"""A searchable corpus from pasted text and uploaded .txt / .md / .csv files, cut into passages."""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass

from adapters.errors import BadInput

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_CORPUS_CHARS = 5_000_000
MAX_PASSAGES = 20_000


@dataclass(frozen=True)
class Passage:
    text: str
    source: str  # "pasted text" or the file name


def read_sources(text: str | None, files: list | None) -> list[tuple[str, str]]:
    """[(source name, text)] from the pasted text and each uploaded file."""
    sources = []
    if text and text.strip():
        sources.append(("pasted text", text))
    for f in files or []:
        path = f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None)
        if path:
            sources.append((os.path.basename(path), _read_file(path)))
    if not sources:
        raise BadInput("The corpus is empty: paste some text or upload .txt, .md or .csv files to search.")
    total = sum(len(t) for _, t in sources)
    if total > MAX_CORPUS_CHARS:
        raise BadInput(f"The corpus is {total:,} characters; the limit is {MAX_CORPUS_CHARS:,}: upload fewer files.")
    return sources


def _read_file(path: str) -> str:
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in (*TEXT_SUFFIXES, ".csv"):
        raise BadInput(f"'{name}' cannot be searched: upload .txt, .md or .csv files.")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise BadInput(f"'{name}' is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB per file.")
    with open(path, "rb") as f:
        raw = f.read()
    if b"\x00" in raw[:8192]:
        raise BadInput(f"'{name}' is not a text file: upload .txt, .md or .csv files.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return _csv_as_text(text) if suffix == ".csv" else text


def _csv_as_text(text: str) -> str:
    """Each CSV row becomes one paragraph of `column: value` pairs, so rows are found by content."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise BadInput(f"The CSV file could not be parsed ({err}).") from None
    if not rows:
        return ""
    header, body = rows[0], rows[1:] or [rows[0]]
    lines = []
    for row in body:
        pairs = [
            f"{h.strip()}: {v.strip()}" if h.strip() else v.strip()
            for h, v in zip(header, row, strict=False)
            if v.strip()
        ]
        lines.append("; ".join(pairs))
    return "\n\n".join(line for line in lines if line)


def chunk(sources: list[tuple[str, str]], max_words: int = 120, overlap: int = 20) -> list[Passage]:
    """One passage per paragraph (blank lines separate them, as the reader wrote them); a
    paragraph over `max_words` words is cut into windows that overlap by `overlap` words, so a
    sentence on a boundary is found whole in one of them."""
    if not 10 <= max_words <= 1000:
        raise BadInput(f"Passage size must be between 10 and 1000 words (got {max_words}).")
    overlap = max(0, min(overlap, max_words // 2))
    step = max_words - overlap
    passages: list[Passage] = []
    for source, text in sources:
        for paragraph in re.split(r"\n\s*\n", text):
            words = paragraph.split()
            for start in range(0, max(len(words) - overlap, 1), step):
                window = words[start : start + max_words]
                if window:
                    passages.append(Passage(" ".join(window), source))
    if not passages:
        raise BadInput("The corpus has no text to search: paste some text or upload non-empty files.")
    if len(passages) > MAX_PASSAGES:
        raise BadInput(
            f"The corpus makes {len(passages):,} passages; the limit is {MAX_PASSAGES:,}: use larger passages."
        )
    return passages
