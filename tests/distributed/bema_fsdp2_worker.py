"""BEMA shard-local under FSDP2: `torchrun --nproc_per_node 2 bema_fsdp2_worker.py OUT` (gloo on CPU).

The FSDP2 worker's loop (`fsdp2_worker.run`) with BEMA on: each rank keeps BEMA's θ₀, EMA and last
weights of its own shard, nothing is gathered per step, the shards gathered equal an unsharded
model's BEMA, and a run resumed from checkpoint-5 (one state file a rank) ends with the same BEMA.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import fsdp2_worker  # noqa: E402

from hf_swa import SWAConfig, WeightAverager  # noqa: E402
from hf_swa.averaging.distributed import full_averages  # noqa: E402

# Anchored at step 1, updated at steps 3, 5 and 7: checkpoint-5 lies between two updates' effects.
CONFIG = SWAConfig(
    swa_start=3,
    swa_freq=2,
    swa_lr_ratio=0.0,
    swa_ship="bema",
    swa_bema=True,
    swa_bema_update_after=1,
    swa_bema_update_freq=2,
)


def main(out):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (common.WORLD_SIZE,))

    reference = common.tiny_bert_without_dropout()
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=fsdp2_worker.LR)
    ref_averager = WeightAverager(reference, bema=CONFIG.bema_settings())
    for step in range(1, common.MAX_STEPS + 1):
        fsdp2_worker.sgd_step(reference, ref_optimizer, fsdp2_worker.batch(step))
        ref_averager.update_bema(reference, step)

    callback, model, saved_shards, calls = fsdp2_worker.run(mesh, rank, os.path.join(out, "run"), config=CONFIG)
    checkpoint = os.path.join(out, "run", f"checkpoint-{common.INTERRUPT_AT}")
    resumed, _, _, _ = fsdp2_worker.run(
        mesh, rank, os.path.join(out, "resumed"), resume_from=checkpoint, weights_at_resume=saved_shards, config=CONFIG
    )
    averager = callback.averager
    common.dump_tensors(os.path.join(out, f"local-rank{rank}.safetensors"), averager.averages("bema"))
    common.dump_tensors(os.path.join(out, f"resumed-rank{rank}.safetensors"), resumed.averager.averages("bema"))
    common.dump_tensors(os.path.join(out, f"full-rank{rank}.safetensors"), full_averages(averager, model, name="bema"))
    common.dump_tensors(os.path.join(out, f"reference-rank{rank}.safetensors"), ref_averager.averages("bema"))
    common.dump_json(
        os.path.join(out, f"report-rank{rank}.json"),
        {"sharded": averager.sharded, "held": averager.held, "collectives_in_updates": calls},
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
