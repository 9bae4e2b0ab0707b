"""DDP worker: `accelerate launch --multi_gpu --num_processes 2 ddp_worker.py OUT` with use_cpu (gloo).

Each rank runs SWATrainer three times: uninterrupted; interrupted after checkpoint-5;
resumed from it. It dumps, per rank, the averages, the final weights, the metrics and
how many times it wrote SWA state, for tests/test_distributed.py to compare.
"""

import os
import sys

import torch
from transformers import Trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from tiny_models import StopAt  # noqa: E402

import hf_swa.training.callback  # noqa: E402

writes = {"save_swa_state": 0, "write_config": 0}


def count_writes():
    """Count, in this process, the calls that write SWA state and swa_config.json."""
    save, write_config = hf_swa.training.callback.save_swa_state, hf_swa.training.callback.SWACallback.write_config

    def counting_save(*args, **kwargs):
        writes["save_swa_state"] += 1
        return save(*args, **kwargs)

    def counting_write_config(self, folder):
        writes["write_config"] += 1
        return write_config(self, folder)

    hf_swa.training.callback.save_swa_state = counting_save
    hf_swa.training.callback.SWACallback.write_config = counting_write_config


def main(out):
    count_writes()
    full = common.swa_trainer(os.path.join(out, "full"))  # asserts args.world_size == 2
    assert torch.distributed.get_world_size() == common.WORLD_SIZE
    rank = common.rank()
    train_loss = full.train().training_loss
    metrics = full.evaluate()
    full.save_model(os.path.join(out, "final"))
    common.dump_tensors(
        os.path.join(out, f"averages-full-rank{rank}.safetensors"), full.swa_callback.averager.averages()
    )
    common.dump_tensors(os.path.join(out, f"model-full-rank{rank}.safetensors"), dict(full.model.named_parameters()))
    common.dump_tensors(
        os.path.join(out, f"candidates-full-rank{rank}.safetensors"),
        common.candidate_averages(full.swa_callback.averager, full.model),
    )
    # What transformers' own Trainer reports for the same model (recorded, not asserted: see the README).
    plain = Trainer(model=full.model, args=full.args, eval_dataset=common.EVAL_DATA)
    plain_eval_loss = plain.evaluate()["eval_loss"]
    writes_full = dict(writes)

    common.swa_trainer(os.path.join(out, "resumed"), callbacks=[StopAt(common.INTERRUPT_AT)]).train()
    resumed = common.swa_trainer(os.path.join(out, "resumed"))
    resumed.train(resume_from_checkpoint=os.path.join(out, "resumed", f"checkpoint-{common.INTERRUPT_AT}"))
    common.dump_tensors(
        os.path.join(out, f"averages-resumed-rank{rank}.safetensors"), resumed.swa_callback.averager.averages()
    )
    common.dump_json(
        os.path.join(out, f"report-rank{rank}.json"),
        {
            "rank": rank,
            "world_size": torch.distributed.get_world_size(),
            "train_loss": train_loss,
            "eval_loss": metrics["eval_loss"],
            "eval_swa_loss": metrics["eval_swa_loss"],
            "plain_trainer_eval_loss": plain_eval_loss,
            "n_averaged": full.swa_callback.averager.n_averaged,
            "n_averaged_resumed": resumed.swa_callback.averager.n_averaged,
            "writes_full_run": writes_full,
            "writes_all_runs": dict(writes),
        },
    )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
