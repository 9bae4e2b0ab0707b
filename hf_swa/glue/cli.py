"""``hf-swa-glue``: fine-tune on a GLUE task (or your own sentence(-pair) classification files) with SWA.

    hf-swa-glue --model_name_or_path bert-base-cased --task_name mrpc \\
        --do_train --do_eval --output_dir out/mrpc
    accelerate launch -m hf_swa.glue.cli --model_name_or_path ./my-model --task_name rte \\
        --train_file train.tsv --validation_file dev.tsv --do_train --do_eval --output_dir out/rte
    hf-swa-glue config.json       # all arguments from one JSON file

Every TrainingArguments flag works, plus the SWA flags (--swa, --swa_start, --swa_freq,
--swa_lr, --swa_lr_ratio, ...). ``scripts/run_glue.py`` is the same command. See
:mod:`hf_swa.glue.run`.

With --push_to_hub (and --hub_model_id, default: the output folder's name) an SWA run
pushes once, after training: the model it shipped (the candidate chosen, or the average),
its swa_config.json and a model card with the results. Checkpoints (live weights) are never pushed.
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments, ModelArguments


def parse_args(argv: list[str]) -> tuple:
    """The three argument dataclasses, from flags or from one JSON file."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, GlueTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def push_shipped(model_args: ModelArguments, data_args: DataTrainingArguments, training_args) -> str:
    """Push the model in ``output_dir`` (what the run shipped) with the card ``run_glue`` wrote; returns the URL."""
    from hf_swa.glue.run import model_card_fields
    from hf_swa.hub import push_to_hub

    card = model_card_fields(model_args, data_args, training_args)
    return push_to_hub(
        training_args.output_dir,
        card.pop("repo_id"),
        token=training_args.hub_token,
        private=bool(training_args.hub_private_repo),
        **card,
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    push = training_args.push_to_hub and training_args.swa
    if push:  # the Trainer would push every checkpoint, i.e. live weights: push the shipped model once at the end
        training_args.push_to_hub = False
    from hf_swa.glue.run import run_glue  # datasets, evaluate and the Trainer: only to run

    run_glue(model_args, data_args, training_args)
    if push and training_args.should_save:
        print(f"Pushed the shipped model: {push_shipped(model_args, data_args, training_args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
