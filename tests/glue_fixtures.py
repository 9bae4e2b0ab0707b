"""Tiny saved models/tokenizers and small data files for the GLUE tests (all offline)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2Model,
    GPT2TokenizerFast,
)

POSITIVE = ["good", "great", "fine", "nice"]
NEGATIVE = ["bad", "awful", "poor", "sad"]
FILLER = ["the", "a", "film", "movie", "was", "is", "very", "plot", "actor", "story", "and", "it"]
WORDS = POSITIVE + NEGATIVE + FILLER


def save_tiny_bert(folder: Path, num_labels: int = 2, seed: int = 0, head: bool = False) -> Path:
    """A 2-layer BERT and a WordPiece tokenizer over WORDS, saved to `folder`.

    Like a Hub base model (``bert-base-uncased``) it has no classification head unless `head`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    # A `tokenizers` object: transformers 5 ignores `vocab_file=` (it builds a 5-token vocab), 4.x has no `vocab=`.
    wordpiece = Tokenizer(models.WordPiece({token: i for i, token in enumerate(tokens)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece)
    assert len(tokenizer) == len(tokens)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    (BertForSequenceClassification if head else BertModel)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_gpt2(folder: Path, num_labels: int = 2, seed: int = 0, head: bool = False) -> Path:
    """A 2-layer GPT-2 (no classification head unless `head`) and a byte-level BPE tokenizer
    with no pad token, saved to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [" ".join(WORDS)] * 4, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    assert tokenizer.pad_token is None
    eos = tokenizer.eos_token_id
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        num_labels=num_labels,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    (GPT2ForSequenceClassification if head else GPT2Model)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentiment_rows(n: int, seed: int, labels=("0", "1")) -> list[dict]:
    """Single sentences whose label is given by a sentiment word (learnable in a few steps)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(NEGATIVE if label == 0 else POSITIVE)
        words = rng.sample(FILLER, 4) + [word]
        rng.shuffle(words)
        rows.append({"idx": i, "sentence": " ".join(words), "label": labels[label]})
    return rows


def pair_rows(
    n: int, seed: int, label_names=("entailment", "neutral", "contradiction"), keys=("premise", "hypothesis")
):
    """Sentence pairs with string labels cycling through `label_names`."""
    rng = random.Random(seed)
    return [
        {
            "idx": i,
            keys[0]: " ".join(rng.sample(WORDS, 5)),
            keys[1]: " ".join(rng.sample(WORDS, 3)),
            "label": label_names[i % len(label_names)],
        }
        for i in range(n)
    ]


def write_rows(path: Path, rows: list[dict], columns=None) -> Path:
    """Write rows as .tsv/.csv (no quoting added) or .jsonl, by the file's suffix."""
    columns = columns or list(rows[0])
    if path.suffix in (".jsonl", ".json"):
        path.write_text("".join(json.dumps({c: r[c] for c in columns}) + "\n" for r in rows))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        lines = [sep.join(columns)] + [sep.join(str(r[c]) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    return path


def predict_rows(model_dir: Path, rows: list[dict], text_keys, max_length: int = 128) -> list:
    """The saved model's answer for each row, one example at a time (so no padding): a class name, or a score
    for a one-output (regression) head. An independent reference for what run_glue evaluates."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answers = []
    with torch.no_grad():
        for row in rows:
            batch = tokenizer(*[row[k] for k in text_keys], truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**batch).logits[0]
            answers.append(float(logits[0]) if logits.numel() == 1 else model.config.id2label[int(logits.argmax())])
    return answers


# Metrics by hand, from their textbook definitions, to check the shipped GLUE metric against.
def accuracy(gold: list, predicted: list) -> float:
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def _confusion(gold: list, predicted: list, positive) -> tuple:
    pairs = list(zip(gold, predicted, strict=True))
    tp = sum(g == positive and p == positive for g, p in pairs)
    fp = sum(g != positive and p == positive for g, p in pairs)
    fn = sum(g == positive and p != positive for g, p in pairs)
    return tp, fp, fn, len(pairs) - tp - fp - fn


def f1(gold: list, predicted: list, positive) -> float:
    tp, fp, fn, _ = _confusion(gold, predicted, positive)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews(gold: list, predicted: list, positive) -> float:
    tp, fp, fn, tn = _confusion(gold, predicted, positive)
    denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def pearson(x: list, y: list) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / (sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)) ** 0.5


def ranks(values: list) -> list:
    """1-based ranks, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            result[i] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: list, y: list) -> float:
    return pearson(ranks(x), ranks(y))


def flags(**options) -> list[str]:
    """Command-line flags from keywords: a list gives several values, ``True`` a bare flag.

    >>> flags(task_name="sst2", seeds=[1, 2], do_train=True)
    ['--task_name', 'sst2', '--seeds', '1', '2', '--do_train']
    """
    argv = []
    for name, value in options.items():
        argv.append(f"--{name}")
        if isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        elif value is not True:
            argv.append(str(value))
    return argv
