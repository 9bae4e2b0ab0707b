"""When does averaging beat the live weights? A regime map on real data (docs/when-averaging-helps.md).

For each set of `study_sets.py` (a fixed test split and a pool of labelled rows), each seed and each
regime, it fine-tunes all-MiniLM-L6-v2 with the demo's settings (peak LR 8e-5, batch 32, 6% warmup,
weight decay 0.01) in these variants:

- ``baseline``: what a user runs without hf_swa: every pool row, the Trainer's linear decay, no SWA;
- ``all``: SWA on every pool row, no selection (the ``--swa_refit`` model and the columns on all rows);
- ``rows``: SWA with 20% of the pool held out row by row (stratified) to choose on;
- ``groups``: SWA with 20% of the pool held out as whole groups (sets with a group column).

A regime is ``tail<r>-start<s>-ep<E>-freq<n>``: from ``swa_start`` = s the LR is held at r times its
peak (r = 0 keeps the linear decay), over E epochs, with a snapshot every n optimizer steps. The grid
runs the default ``swa_freq`` (every step), as shipped. The runs stored before the suffix existed
(``tail<r>-start<s>-ep<E>``, no suffix) snapshot every ``steps // 40`` steps; they stay readable and
rerunnable under their names, and the report names the period of each. Every SWA run keeps the
candidates ``swa`` (the uniform average from s), 3 later windows ``swa_from<step>``, EMAs
``ema_0.8``/``ema_0.9`` of the snapshots (per snapshot: far shorter at every step), and power EMAs
``pema_0.05``/``pema_0.1`` (stored) and ``pema_0.2`` (reconstructed): candidates beside the
defaults' that change neither the training nor the windows. Every
candidate and ``live`` is scored on the test rows and on the selection rows; the selection (by loss,
ties to the earlier name, as ``SWATrainer`` does) is computed from those scores.

    python benchmarks/regime_study.py --plan                    # the jobs, in the order they run
    python benchmarks/regime_study.py --run [--shard 0/2]       # run what is not stored yet
    python benchmarks/regime_study.py --analyze                 # the tables and the plot

Results are stored per run in benchmarks/results/regime/ (small JSON files, kept in git).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

sys.path.insert(0, str(Path(__file__).parent))
from regime_report import parse_regime  # noqa: E402
from study_sets import SHIFTED, SIZES, load_set  # noqa: E402

from hf_swa import SWATrainer, SWATrainingArguments, selection_split  # noqa: E402
from hf_swa.demo.embedded import minilm_path  # noqa: E402
from hf_swa.training import defaults  # noqa: E402
from hf_swa.training.selection import LIVE  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "regime"
SCRATCH = Path("outputs/regime_study")
PLOT = Path(__file__).parent.parent / "docs" / "when-averaging-helps.png"
SELECT_SHARE = 0.2
SEEDS = (1, 2, 3, 4, 5)
#: The regimes, in the order they run: the full grid of the LR tail, swa_start and epochs, snapshots as shipped.
REGIMES = [
    f"tail{r}-start{s}-ep{e}-freq{defaults.SWA_FREQ}" for e in (3, 8) for s in (0.5, 0.25) for r in (0.5, 1.0, 0.0)
]
HPARAMS = dict(learning_rate=8e-5, per_device_train_batch_size=32, warmup_steps=0.06, weight_decay=0.01)


def variants(dataset: str) -> list:
    return ["all", "rows", "groups"] if dataset in SHIFTED else ["all", "rows"]


def result_path(dataset: str, regime: str, variant: str, seed: int) -> Path:
    folder = f"ep{parse_regime(regime)['epochs']}" if variant == "baseline" else regime
    return RESULTS / dataset / folder / f"{variant}-seed{seed}.json"


def plan(datasets, seeds, regimes) -> list:
    """Every (dataset, regime, variant, seed), seeds outermost so that a cut run still covers the grid."""
    jobs, seen = [], set()
    for seed in seeds:
        for regime in regimes:
            for dataset in datasets:
                for variant in ["baseline", *variants(dataset)]:
                    job = (dataset, regime, variant, seed)
                    if result_path(*job) not in seen:  # one baseline per epoch count
                        seen.add(result_path(*job))
                        jobs.append(job)
    return jobs


def encode(rows, tokenizer, label_ids, max_length):
    if not rows:
        return []
    encoded = tokenizer([row["text"] for row in rows], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label_ids[row["label"]]}
        for ids, mask, row in zip(encoded["input_ids"], encoded["attention_mask"], rows)
    ]


def split_pool(pool: list, variant: str, seed: int) -> tuple:
    if variant in ("baseline", "all"):
        return pool, []
    groups = [row["group"] for row in pool] if variant == "groups" else None
    train, select = selection_split(SELECT_SHARE, labels=[row["label"] for row in pool], groups=groups, seed=seed)
    return [pool[i] for i in train], [pool[i] for i in select]


def scores(trainer: Trainer, data: list) -> dict:
    if not data:
        return {}
    output = trainer.predict(data)
    logits = torch.tensor(output.predictions, dtype=torch.float64)
    labels = torch.tensor(output.label_ids)
    loss = -torch.log_softmax(logits, -1)[torch.arange(len(labels)), labels].mean()
    return {"accuracy": float((logits.argmax(-1) == labels).double().mean()), "loss": float(loss)}


def training_arguments(regime: dict, variant: str, seed: int, output_dir: Path, n_train: int):
    steps = regime["epochs"] * math.ceil(n_train / HPARAMS["per_device_train_batch_size"])
    common = dict(
        output_dir=str(output_dir),
        num_train_epochs=regime["epochs"],
        per_device_eval_batch_size=128,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        **HPARAMS,
    )
    if variant == "baseline":
        return SWATrainingArguments(swa=False, **common)
    return SWATrainingArguments(
        swa_start=regime["start"],
        swa_freq=regime["freq"] or max(1, steps // 40),  # no suffix: the stored runs' period
        swa_windows=4,
        swa_windows_at_most=True,
        swa_lr=regime["tail"] * HPARAMS["learning_rate"] if regime["tail"] else None,
        swa_lr_ratio=0.0,  # no tail unless the regime sets swa_lr
        swa_ema_decays=[0.8, 0.9],
        swa_power_ema_stds=[0.05, 0.1],
        swa_power_ema_candidates=[0.2],
        swa_power_ema_every=max(1, steps // 8),
        **common,
    )


def run(dataset: str, regime_name: str, variant: str, seed: int) -> dict:
    test_rows, pool, max_length = load_set(dataset)
    train_rows, select_rows = split_pool(pool, variant, seed)
    labels = sorted({row["label"] for row in pool + test_rows})
    label_ids = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    train, select, test = (encode(r, tokenizer, label_ids, max_length) for r in (train_rows, select_rows, test_rows))
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels))
    output_dir = SCRATCH / dataset / regime_name / f"{variant}-seed{seed}"
    args = training_arguments(parse_regime(regime_name), variant, seed, output_dir, len(train))
    trainer_class = Trainer if variant == "baseline" else SWATrainer
    trainer = trainer_class(
        model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer)
    )
    start = time.perf_counter()
    trainer.train()
    result = {"train_rows": len(train), "select_rows": len(select), "test_rows": len(test), "candidates": {}}
    if variant == "baseline":
        result["candidates"][LIVE] = {"test": scores(trainer, test)}
    else:
        averager = trainer.swa_callback.averager
        for name in averager.candidate_names():
            with averager.averaged_weights(trainer.model, name):
                result["candidates"][name] = {"test": scores(trainer, test), "select": scores(trainer, select)}
        with averager.live_weights(trainer.model):
            result["candidates"][LIVE] = {"test": scores(trainer, test), "select": scores(trainer, select)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    shutil.rmtree(output_dir, ignore_errors=True)
    return result


def checked_regime(regime: str) -> str:
    try:
        parse_regime(regime)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return regime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--regimes", nargs="+", default=REGIMES, type=checked_regime)
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (default: all of them)")
    parser.add_argument("--plan", action="store_true", help="list the jobs not stored yet")
    parser.add_argument("--run", action="store_true", help="run the jobs not stored yet")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th job from the i-th")
    parser.add_argument("--analyze", action="store_true", help="print the tables and draw the plot")
    args = parser.parse_args()
    jobs = [job for job in plan(args.datasets, args.seeds, args.regimes) if not result_path(*job).exists()]
    jobs = [job for job in jobs if args.variants is None or job[2] in args.variants]
    if args.plan:
        print("\n".join(" ".join(map(str, job)) for job in jobs) + f"\n{len(jobs)} jobs")
    if args.run:
        index, count = map(int, args.shard.split("/"))
        for job in jobs[index::count]:
            if result_path(*job).exists():
                continue
            result = run(*job)
            path = result_path(*job)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
            print(" ".join(map(str, job)), f"{result['seconds']} s", flush=True)
    if args.analyze:
        from regime_report import plot, report

        print(report(RESULTS))
        print(f"plot: {plot(RESULTS, PLOT)}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
