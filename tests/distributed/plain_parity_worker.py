"""Plain-parity worker: `accelerate launch --multi_gpu --num_processes 2 plain_parity_worker.py OUT` (gloo, CPU).

Each rank trains the tiny BERT (its loss not declared a mean: transformers' own scaling) with
gradient accumulation three times: with transformers' `Trainer`, with `SWATrainer(swa=False)`
and with `SWATrainer` averaging (its live weights); it dumps the final weights and losses.
"""

import os
import sys

from transformers import Trainer, TrainingArguments

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from tiny_models import tiny_bert  # noqa: E402

from hf_swa import SWATrainer, SWATrainingArguments  # noqa: E402

RUN = dict(common.TRAIN, save_strategy="no", per_device_train_batch_size=2, gradient_accumulation_steps=2)


def main(out):
    runs = {
        "plain": (Trainer, TrainingArguments(output_dir=os.path.join(out, "plain"), **RUN)),
        "no_swa": (SWATrainer, SWATrainingArguments(output_dir=os.path.join(out, "no_swa"), swa=False, **RUN)),
        "swa": (
            SWATrainer,
            SWATrainingArguments(output_dir=os.path.join(out, "swa"), swa_start=3, swa_lr_ratio=0.0, **RUN),
        ),
    }
    rank = common.rank()  # the arguments have set up the process group
    losses = {}
    for name, (trainer_class, args) in runs.items():
        assert args.world_size == common.WORLD_SIZE
        trainer = trainer_class(model=tiny_bert(seed=0), args=args, train_dataset=common.TRAIN_DATA)
        losses[name] = trainer.train().training_loss
        if name == "swa":
            with trainer.swa_callback.live_weights(trainer.model):
                weights = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
        else:
            weights = dict(trainer.model.named_parameters())
        common.dump_tensors(os.path.join(out, f"{name}-rank{rank}.safetensors"), weights)
    common.dump_json(os.path.join(out, f"losses-rank{rank}.json"), losses)


if __name__ == "__main__":
    main(sys.argv[1])
