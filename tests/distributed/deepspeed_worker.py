"""DeepSpeed worker: `torchrun --nproc_per_node 2 deepspeed_worker.py STAGE OUT` (ZeRO-STAGE on CPU, gloo).

SWATrainer with `deepspeed=` in the arguments runs the shared settings (SGD, the SWA LR
tail, same global batch) uninterrupted, then interrupted after checkpoint-5 and resumed.
Each rank dumps the full averages (gathered only here, to save), its local averages,
the metrics and whether anything deep-copied a module.
"""

import copy
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from tiny_models import StopAt  # noqa: E402

from hf_swa import SWATrainer, SWATrainingArguments  # noqa: E402
from hf_swa.averaging.distributed import full_averages  # noqa: E402

deep_copied_modules = []


def deepspeed_config(stage):
    return {
        "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
    }


def watch_deepcopy():
    """Record every module that copy.deepcopy copies in this process."""
    deepcopy = copy.deepcopy

    def watching_deepcopy(obj, *args, **kwargs):
        if isinstance(obj, nn.Module):
            deep_copied_modules.append(type(obj).__name__)
        return deepcopy(obj, *args, **kwargs)

    copy.deepcopy = watching_deepcopy


def trainer(stage, output_dir, callbacks=()):
    args = SWATrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=common.GLOBAL_BATCH // common.WORLD_SIZE,
        deepspeed=deepspeed_config(stage),
        **common.SWA,
        **common.TRAIN,
    )
    assert args.world_size == common.WORLD_SIZE, f"launched with world_size={args.world_size}, expected 2"
    return SWATrainer(
        model=common.tiny_bert_without_dropout(),
        args=args,
        train_dataset=common.TRAIN_DATA,
        eval_dataset=common.EVAL_DATA,
        callbacks=list(callbacks),
    )


def main(stage, out):
    watch_deepcopy()
    full = trainer(stage, os.path.join(out, "full"))
    train_loss = full.train().training_loss
    metrics = full.evaluate()
    full.save_model(os.path.join(out, "final"))
    rank = common.rank()
    averager = full.swa_callback.averager
    gathered = full_averages(averager, full.model)  # collective
    common.dump_tensors(os.path.join(out, f"averages-full-rank{rank}.safetensors"), gathered)

    trainer(stage, os.path.join(out, "resumed"), callbacks=[StopAt(common.INTERRUPT_AT)]).train()
    resumed = trainer(stage, os.path.join(out, "resumed"))
    resumed.train(resume_from_checkpoint=os.path.join(out, "resumed", f"checkpoint-{common.INTERRUPT_AT}"))
    common.dump_tensors(
        os.path.join(out, f"averages-resumed-rank{rank}.safetensors"),
        full_averages(resumed.swa_callback.averager, resumed.model),
    )
    common.dump_json(
        os.path.join(out, f"report-rank{rank}.json"),
        {
            "rank": rank,
            "world_size": torch.distributed.get_world_size(),
            "stage": stage,
            "sharded": averager.sharded,
            "train_loss": train_loss,
            "eval_loss": metrics["eval_loss"],
            "eval_swa_loss": metrics["eval_swa_loss"],
            "n_averaged": averager.n_averaged,
            "n_averaged_resumed": resumed.swa_callback.averager.n_averaged,
            "numel_local": sum(t.numel() for t in averager.averages().values()),
            "numel_full": sum(t.numel() for t in gathered.values()),
            "deep_copied_modules": deep_copied_modules,
        },
    )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
