"""``hf-swa-average``: average or greedy-soup saved checkpoints into a plain Transformers model.

    hf-swa-average CKPT_DIR [CKPT_DIR ...] --output_dir OUT
    hf-swa-average --run_dir RUN --last 4 --output_dir OUT          # the last 4 checkpoint-N of a run
    hf-swa-average --run_dir RUN --steps 300:600 --output_dir OUT   # checkpoints with 300 <= N <= 600
    hf-swa-average ... --weights 1 2 3                              # a weighted mean (normalised)
    hf-swa-average SEED_DIRS ... --soup greedy --task_name sst2 --output_dir OUT
    hf-swa-average ... --push_to_hub --hub_model_id me/model
    hf-swa-average --run_dir RUN --power_ema_std 0.02 0.05 0.1 --output_dir OUT   # OUT/pema_0.02, ...

The output holds the averaged weights, the newest input's config and tokenizer,
``swa_config.json`` (sources, steps, weights, scores) and a model card. With
``--power_ema_std`` it reconstructs power EMAs of those widths (EDM2's post-hoc EMA) from
the run's snapshots, one model per width in ``OUT/pema_{std}``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from hf_swa.checkpointing.names import CONFIG_FILE, POWER_EMA_DIR
from hf_swa.posthoc.arguments import SoupEvaluationArguments, dataclass_parser, parse_into

__all__ = ["AverageArguments", "main", "run_average"]


@dataclass
class AverageArguments:
    """Which checkpoints to average, how, and where the result goes.

    Example:
        >>> args, evaluation, checkpoints = parse_args(
        ...     ["--run_dir", "out/run", "--last", "4", "--output_dir", "out/avg"])
        >>> args.run_dir, args.last, args.soup, checkpoints
        ('out/run', 4, 'uniform', [])
    """

    output_dir: str = field(metadata={"help": "Folder for the averaged model (must not be or hold an input)."})
    run_dir: Optional[str] = field(
        default=None, metadata={"help": "A Trainer output folder: average its checkpoint-N folders."}
    )
    last: Optional[int] = field(default=None, metadata={"help": "With --run_dir: the newest N checkpoints."})
    steps: Optional[str] = field(
        default=None, metadata={"help": "With --run_dir: checkpoints with A <= N <= B, written A:B (or A: or :B)."}
    )
    weights: Optional[list[float]] = field(
        default=None,
        metadata={"help": "One weight per checkpoint, in their order (oldest first with --run_dir); normalised."},
    )
    soup: str = field(
        default="uniform",
        metadata={
            "help": "uniform: the (weighted) mean of all inputs. greedy: a greedy soup chosen on the "
            "validation data (--task_name or --validation_file).",
            "choices": ["uniform", "greedy"],
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an output folder that holds files (once the new one is complete)."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Push the averaged model to the Hub."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "The Hub repository, e.g. me/model."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the login)."})
    base_model: Optional[str] = field(default=None, metadata={"help": "Hub id of the fine-tuned base model (card)."})
    power_ema_std: Optional[list[float]] = field(
        default=None,
        metadata={
            "help": "Reconstruct power EMAs of these relative widths (0 < std < 0.289) from the run's snapshots, "
            "one model per width in OUTPUT_DIR/pema_{std}; the newest checkpoint given supplies config and tokenizer."
        },
    )
    power_ema_dir: Optional[str] = field(
        default=None, metadata={"help": "With --power_ema_std: the snapshot folder (default RUN_DIR/swa_power_ema)."}
    )
    power_ema_step: Optional[int] = field(
        default=None, metadata={"help": "With --power_ema_std: the step to reconstruct (default: the last snapshot)."}
    )

    def __post_init__(self):
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. me/model).")


def parser():
    p = dataclass_parser(
        [AverageArguments, SoupEvaluationArguments],
        prog="hf-swa-average",
        description="Average or greedy-soup saved checkpoints into a plain Transformers model.",
        usage="hf-swa-average [CKPT_DIR ...] --output_dir OUT [options]",
    )
    p.add_argument("checkpoints", nargs="*", help="Checkpoint folders (full, sharded or PEFT adapters).")
    return p


def parse_args(argv: Optional[list] = None) -> tuple:
    """``(AverageArguments, SoupEvaluationArguments, checkpoint folders)`` from the command line."""
    (args, evaluation), namespace = parse_into(parser(), [AverageArguments, SoupEvaluationArguments], argv)
    return args, evaluation, namespace.checkpoints


def run_average(args: AverageArguments, evaluation: SoupEvaluationArguments, checkpoints: list) -> dict:
    """Average (or soup) as the command line asks; return what ``swa_config.json`` records.

    Everything (the model, its scores, ``swa_config.json``, the card) is written into a staging folder
    that replaces ``--output_dir`` last, so a refusal or a failure leaves the output folder as it was.
    """
    if args.power_ema_std:
        return run_power_ema(args, evaluation, checkpoints)
    from hf_swa.checkpointing.state import write_json_atomic
    from hf_swa.checkpointing.writer import check_output_dir, staged_folder
    from hf_swa.posthoc.average import open_checkpoints, resolve_checkpoints

    folders = resolve_checkpoints(checkpoints, args.run_dir, args.last, args.steps)
    # Bad input is refused before the evaluation data is loaded.
    check_output_dir(args.output_dir, folders, args.overwrite_output_dir)
    open_checkpoints(folders)
    if args.soup == "greedy" and not evaluation.given:
        raise ValueError("--soup greedy scores checkpoints: pass --task_name or --validation_file.")
    if args.soup == "greedy" and args.weights:
        raise ValueError("--weights applies to --soup uniform; a greedy soup weights its members equally.")
    score_fn, metric = _score_fn(evaluation, folders) if evaluation.given else (None, None)
    with staged_folder(args.output_dir) as stage:
        record = _average_into(stage, args, folders, score_fn, metric)
        write_json_atomic(os.path.join(stage, CONFIG_FILE), record)
        _write_card(stage, record, args, evaluation)
    _push(args, record)
    return record


def _average_into(stage: str, args: AverageArguments, folders: list, score_fn, metric: Optional[str]) -> dict:
    """The soup or the (weighted) mean of ``folders``, written into the empty ``stage``; its record, with scores."""
    from hf_swa.posthoc.average import average_checkpoints
    from hf_swa.posthoc.soup import greedy_soup, score_checkpoints

    if args.soup == "greedy":
        record = greedy_soup(folders, stage, score_fn, overwrite_output_dir=True)
        record["soup"]["metric"] = metric
        return record
    scores = score_checkpoints(folders, score_fn) if score_fn is not None else None
    record = average_checkpoints(folders, stage, weights=args.weights, overwrite_output_dir=True)
    if scores is not None:
        average_score = next(iter(score_checkpoints([stage], score_fn).values()))
        record["scores"] = {"metric": metric, "inputs": scores, "average": average_score}
    return record


def _write_card(folder: str, record: dict, args: AverageArguments, evaluation: SoupEvaluationArguments) -> None:
    from hf_swa.glue.tasks import dataset_facts  # static data: a GLUE task's data set, for the card's metadata
    from hf_swa.posthoc.card import write_posthoc_card

    facts = dataset_facts(evaluation.task_name)
    card = dict(repo_id=args.hub_model_id, base_model=args.base_model, task_name=evaluation.task_name)
    card.update(dataset_id=facts.get("id"), dataset_name=facts.get("name"), task_phrase=facts.get("purpose"))
    write_posthoc_card(folder, record, **card)


def run_power_ema(args: AverageArguments, evaluation: SoupEvaluationArguments, checkpoints: list) -> dict:
    """Reconstruct one model per ``--power_ema_std``; return ``{"method": "power_ema", "models": [records]}``."""
    from hf_swa.checkpointing.writer import check_output_dir, staged_folder
    from hf_swa.posthoc.average import resolve_checkpoints
    from hf_swa.posthoc.card import write_posthoc_card
    from hf_swa.posthoc.power_ema_reconstruction import power_ema_folder, write_power_ema_models

    if args.soup != "uniform" or args.weights or args.push_to_hub:
        raise ValueError("--power_ema_std writes one model per width: leave out --soup, --weights and --push_to_hub.")
    snapshot_dir = args.power_ema_dir or (os.path.join(args.run_dir, POWER_EMA_DIR) if args.run_dir else None)
    if snapshot_dir is None:
        raise ValueError("--power_ema_std needs the snapshots: pass --run_dir RUN or --power_ema_dir DIR.")
    if not checkpoints and args.run_dir is None:
        raise ValueError("--power_ema_std needs a model folder for config and tokenizer: pass CKPT_DIR or --run_dir.")
    base = _newest(resolve_checkpoints(checkpoints, args.run_dir, args.last, args.steps))
    check_output_dir(args.output_dir, [snapshot_dir, base], args.overwrite_output_dir)
    scoring = _score_fn(evaluation, [base]) if evaluation.given else None  # the data, before anything is written
    with staged_folder(args.output_dir) as stage:  # every width, its scores and card, then one rename
        records = write_power_ema_models(snapshot_dir, args.power_ema_std, stage, base, step=args.power_ema_step)
        folders = [power_ema_folder(stage, std) for std in args.power_ema_std]
        summary = {"method": "power_ema", "strategy": "power_ema", "models": records}
        if scoring is not None:
            summary["selection"] = _score_power_emas(scoring, base, folders, records)
        card = dict(repo_id=None, base_model=args.base_model, task_name=evaluation.task_name)
        for folder, record in zip(folders, records):
            write_posthoc_card(folder, record, **card)
    return summary


def _score_power_emas(scoring: tuple, base: str, folders: list, records: list) -> dict:
    """Score each reconstructed width and the base checkpoint (``live``); name the best, in each record too."""
    from hf_swa.checkpointing.state import write_json_atomic
    from hf_swa.posthoc.soup import score_checkpoints

    score_fn, metric = scoring
    names = [f"pema_{record['std']:g}" for record in records] + ["live"]
    scores = dict(zip(names, score_checkpoints([*folders, base], score_fn).values()))
    # score_fn is higher-is-better (a loss is negated): report the metric as it reads.
    shown = {name: -value if metric.endswith("loss") else value for name, value in scores.items()}
    selection = {"metric": metric, "scores": shown, "chosen": max(names, key=lambda name: scores[name])}
    for folder, record in zip(folders, records):
        record["scores"] = {"metric": metric, "average": shown[f"pema_{record['std']:g}"], "live": shown["live"]}
        write_json_atomic(os.path.join(folder, CONFIG_FILE), record)
    return selection


def _push(args: AverageArguments, record: dict) -> None:
    if args.push_to_hub:
        from hf_swa.hub.push import HubPushError, push_to_hub

        try:
            url = push_to_hub(
                args.output_dir,
                args.hub_model_id,
                token=args.hub_token,
                private=args.hub_private_repo,
                commit_message=f"Upload a post-hoc average of {record['n_averaged']} checkpoints (hf_swa)",
            )
        except HubPushError as err:
            again = f"hf-swa-push --model_dir {args.output_dir} --repo_id {args.hub_model_id} --no_card"
            raise HubPushError(f"{err} The average is saved in {args.output_dir}; push it later with: {again}") from err
        print(f"Pushed {args.output_dir} to {url}")


def _score_fn(evaluation: SoupEvaluationArguments, folders: list) -> tuple:
    """The GLUE scorer, set up with the config and tokenizer of the newest input."""
    from hf_swa.posthoc.scoring import glue_score_fn

    return glue_score_fn(evaluation, _newest(folders))


def _newest(folders: list) -> str:
    """The input with the highest step (else the last given): it supplies config, tokenizer and layout."""
    from hf_swa.checkpointing.files import saved_step

    steps = [(saved_step(f) is not None, saved_step(f) or 0, i) for i, f in enumerate(folders)]
    return folders[max(steps)[2]]


def main(argv: Optional[list] = None) -> int:
    try:
        args, evaluation, checkpoints = parse_args(argv)
        record = run_average(args, evaluation, checkpoints)
    except (ValueError, FileNotFoundError) as err:
        print(f"hf-swa-average: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from hf_swa.hub.push import HubPushError

        if not isinstance(err, HubPushError):
            raise
        print(f"hf-swa-average: error: {err}", file=sys.stderr)
        return 1
    if record["method"] == "power_ema":
        for model in record["models"]:
            print(json.dumps({k: model[k] for k in ("method", "std", "step", "n_averaged", "weights")}))
        print(f"Wrote {len(record['models'])} power-EMA model(s) to {args.output_dir}/pema_*")
        if "selection" in record:
            selection = record["selection"]
            print(json.dumps(selection))
            print(
                f"Best by {selection['metric']}: {selection['chosen']}"
                + (" (the checkpoint itself: no width scored better)" if selection["chosen"] == "live" else "")
            )
        return 0
    print(json.dumps({k: record[k] for k in ("method", "strategy", "n_averaged", "weights")}))
    print(f"Wrote the average of {record['n_averaged']} checkpoints to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
