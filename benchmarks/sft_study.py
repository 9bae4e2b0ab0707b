"""SFT of SmolLM2-135M-Instruct (LoRA) on tweet sentiment: plain SFTTrainer vs the same run with hf_swa (docs/sft.md).

Each run writes one JSON into --out (skipped when it exists, so the study resumes):
held-out completion loss and exact-match accuracy of the generated label word, of the live weights and,
under SWA, of the weights shipped (hf_swa's defaults: the last window). `zero_shot` scores the model untrained.

    python benchmarks/sft_study.py --seeds 0 1 2   # zero_shot, then baseline and swa per seed
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from trl import SFTConfig, SFTTrainer

from hf_swa import SWAArgumentsMixin, SWATrainerMixin
from hf_swa.demo.smollm2 import label_accuracy, load_smollm2, sft_results, tweet_sentiment_sft


@dataclass
class SWASFTConfig(SWAArgumentsMixin, SFTConfig):
    pass


class SWASFTTrainer(SWATrainerMixin, SFTTrainer):
    pass


LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sft", help="one JSON per run")
    parser.add_argument("--models", default="outputs/sft", help="the trainers' output_dir, the shipped adapters")
    parser.add_argument("--arms", nargs="+", default=["zero_shot", "baseline", "swa"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--n_train", type=int, default=320)
    parser.add_argument("--n_eval", type=int, default=150)
    parser.add_argument("--max_steps", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--report", action="store_true", help="print the tables of the runs stored in --out")
    return parser.parse_args(argv)


def train_args(arm: str, seed: int, args, output_dir: str) -> SFTConfig:
    common = dict(
        output_dir=output_dir,
        seed=seed,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=16,
        learning_rate=args.learning_rate,
        gradient_checkpointing=False,  # memory is no concern at this size; checkpointing costs a third more time
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    if arm == "baseline":
        return SFTConfig(**common)
    return SWASFTConfig(**common)  # hf_swa's defaults: evaluates the full average (swa) and the one shipped


def run(arm: str, seed: int, args, data) -> dict:
    train, validation = data
    model, tokenizer = load_smollm2()
    if arm == "zero_shot":
        start = time.time()
        return {
            "eval": {"live": {"validation": {"accuracy": label_accuracy(model, tokenizer, validation)}}},
            "time_s": time.time() - start,
        }
    model = get_peft_model(model, LoraConfig(**LORA))
    output_dir = str(Path(args.models) / f"{arm}-seed{seed}")
    trainer_class = SFTTrainer if arm == "baseline" else SWASFTTrainer
    trainer = trainer_class(
        model=model,
        args=train_args(arm, seed, args, output_dir),
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(validation),
        processing_class=tokenizer,
    )
    start = time.time()
    trainer.train()
    train_time = time.time() - start
    results = sft_results(trainer, validation)
    results.update(time_s=time.time() - start, train_time_s=train_time)
    results["train_loss"] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    if arm == "swa":
        trainer.save_model(output_dir)  # the shipped adapter with swa_config.json, then what the card reads
        (Path(output_dir) / "results.json").write_text(json.dumps(results, indent=2))
    return results


def rows_of(record: dict):
    """``(weights, loss, accuracy)`` of one run: live, then the weights shipped (a window), then the full average."""
    scores = {name: sets["validation"] for name, sets in record["eval"].items()}
    order = ["live"] + sorted(n for n in scores if n not in ("live", "swa")) + (["swa"] if "swa" in scores else [])
    return [(name, scores[name].get("loss"), scores[name].get("accuracy")) for name in order]


def report(out: str) -> str:
    """A markdown table of every run stored in `out`, then mean and std over the seeds of each weights."""
    fmt = lambda x, spec: "–" if x is None else format(x, spec)  # noqa: E731
    lines = ["| run | seed | weights | held-out loss | accuracy | time |", "| --- | --- | --- | --- | --- | --- |"]
    by_weights = {}
    for path in sorted(Path(out).glob("*.json")):
        record = json.loads(path.read_text())
        for name, loss, accuracy in rows_of(record):
            key = (record["arm"], "window shipped" if name.startswith("swa_from") else name)
            by_weights.setdefault(key, []).append((loss, accuracy))
            lines.append(
                f"| {record['arm']} | {record['seed']} | {name} | {fmt(loss, '.4f')} | {fmt(accuracy, '.3f')} "
                f"| {record['time_s'] / 60:.1f} min |"
            )
    lines += ["", "| run | weights | seeds | held-out loss | accuracy |", "| --- | --- | --- | --- | --- |"]
    for (arm, name), values in by_weights.items():
        cells = []
        for column in zip(*values):
            known = [v for v in column if v is not None]
            mean = sum(known) / len(known) if known else None
            std = (sum((v - mean) ** 2 for v in known) / (len(known) - 1)) ** 0.5 if len(known) > 1 else None
            cells.append("–" if mean is None else f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
        lines.append(f"| {arm} | {name} | {len(values)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        print(report(args.out))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    data = tweet_sentiment_sft(args.n_train, args.n_eval, seed=0)  # one split; the seeds vary the training
    for seed in args.seeds:
        for arm in args.arms:
            path = Path(args.out) / f"{arm}-seed{seed}.json"
            if path.exists() or (arm == "zero_shot" and seed != args.seeds[0]):
                continue
            record = run(arm, seed, args, data)
            record.update(arm=arm, seed=seed, settings=vars(args), lora=LORA)
            path.write_text(json.dumps(record, indent=2))
            print(arm, seed, json.dumps(record["eval"]), f"{record['time_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
