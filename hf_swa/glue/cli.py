"""``hf-swa-glue`` (``scripts/run_glue.py``): fine-tune on a GLUE task (or your own sentence(-pair) classification
files) with SWA; every TrainingArguments flag works, plus the SWA flags (see :mod:`hf_swa.glue.run`).

    hf-swa-glue --model_name_or_path bert-base-cased --task_name mrpc --do_train --do_eval --output_dir out/mrpc
    accelerate launch -m hf_swa.glue.cli config.json       # all arguments from one JSON file

With --push_to_hub an SWA run pushes once, after training: the model it shipped, its swa_config.json and its
card; checkpoints (live weights) are never pushed.
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments, ModelArguments


def parse_args(argv: list) -> tuple:
    """The three argument dataclasses, from flags or from one JSON file."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, GlueTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv=None) -> int:
    model_args, data_args, training_args = parse_args(sys.argv[1:] if argv is None else list(argv))
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    from hf_swa.glue.run import model_card_fields, run_glue  # datasets, evaluate and the Trainer: only to run

    push = training_args.push_to_hub and training_args.swa
    training_args.push_to_hub = training_args.push_to_hub and not push  # the Trainer would push live checkpoints
    run_glue(model_args, data_args, training_args)
    if push and training_args.should_save:
        from hf_swa.hub.push import push_after_training

        return push_after_training(
            training_args, model_card_fields(model_args, data_args, training_args), "hf-swa-glue"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
