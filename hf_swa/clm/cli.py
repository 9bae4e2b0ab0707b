"""``hf-swa-clm`` (``scripts/run_clm.py``): train a causal LM with SWA, from a checkpoint (``--gguf_file`` for GGUF
weights) or from scratch (``--model_type``); every TrainingArguments flag works, plus the SWA flags (see
:mod:`hf_swa.clm.run`).

    hf-swa-clm --model_type gpt2 --config_overrides n_layer=4,n_embd=256,n_head=4 --tokenizer_name ./tok \\
        --train_file train.txt --validation_file valid.txt --test_file test.txt --block_size 128 \\
        --do_train --do_eval --swa_eval_candidates --output_dir out/clm
    accelerate launch -m hf_swa.clm.cli config.json       # all arguments from one JSON file

With --push_to_hub an SWA run pushes once, after training: the model it shipped, its swa_config.json and its
card; checkpoints (live weights) are never pushed.
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from hf_swa import SWATrainingArguments
from hf_swa.clm.arguments import ClmDataArguments, ClmModelArguments


def parse_args(argv: list) -> tuple:
    """The three argument dataclasses, from flags or from one JSON file."""
    parser = HfArgumentParser((ClmModelArguments, ClmDataArguments, SWATrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv=None) -> int:
    model_args, data_args, training_args = parse_args(sys.argv[1:] if argv is None else list(argv))
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    from hf_swa.clm.run import model_card_fields, run_clm  # datasets and the Trainer: only to run

    push = training_args.push_to_hub and training_args.swa
    training_args.push_to_hub = training_args.push_to_hub and not push  # the Trainer would push live checkpoints
    run_clm(model_args, data_args, training_args)
    if push and training_args.should_save:
        from hf_swa.hub.push import push_after_training

        return push_after_training(training_args, model_card_fields(model_args, training_args), "hf-swa-clm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
