"""FSDP2 through SWATrainer: `torchrun --nproc_per_node 2 fsdp2_trainer_worker.py OUT` (gloo on CPU).

Accelerate takes its FSDP path only on accelerators: on CPU, `AcceleratorState` keeps
`MULTI_CPU` (DDP) even with an FSDP plugin. `common.allow_fsdp_on_cpu` lifts that one gate, so
that everything past it runs as it does on GPUs: transformers' FSDP2 setup
(`fsdp2_prepare_model`, `fully_shard` per BertLayer), Accelerate's full state dict for
saving, its sharded checkpoints and their resume, with SWATrainer on top.

Each rank runs SWATrainer four times: uninterrupted; interrupted after checkpoint-5;
resumed from it; with bf16 (FSDP2's MixedPrecisionPolicy), recording the full weights
at the snapshot steps. It dumps the full averages (gathered from the shards), what it held
locally, the metrics and the FSDP facts tests/test_distributed.py checks.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from tiny_models import SnapshotRecorder, StopAt  # noqa: E402

from hf_swa.averaging.distributed import fsdp2_modules, full_averages, is_dtensor  # noqa: E402

FSDP = dict(fsdp=True, fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"]})


def trainer(output_dir, callbacks=()):
    return common.swa_trainer(output_dir, callbacks, optim_args=common.FSDP_OPTIM_ARGS, **FSDP)


class FullWeightsRecorder(SnapshotRecorder):
    """The full float64 weights after the given steps, gathered from the shards (collective)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.snapshots[state.global_step] = {
                name: (p.full_tensor() if is_dtensor(p) else p).detach().to(torch.float64).clone()
                for name, p in model.named_parameters()
            }


def bf16_run(out, rank):
    """bf16 through FSDP2's MixedPrecisionPolicy: the fp32 shards are what is trained and averaged."""
    recorder = FullWeightsRecorder(steps=(3, 5, 7))  # SWA: start 3, every 2 steps, 8 steps
    bf16 = common.swa_trainer(
        os.path.join(out, "bf16"), [recorder], optim_args=common.FSDP_OPTIM_ARGS, bf16=True, **FSDP
    )
    bf16.train()
    policy = bf16.accelerator.state.fsdp_plugin.mixed_precision_policy
    averager = bf16.swa_callback.averager
    common.dump_tensors(os.path.join(out, f"averages-bf16-rank{rank}.safetensors"), full_averages(averager, bf16.model))
    common.dump_tensors(os.path.join(out, f"recorded-mean-bf16-rank{rank}.safetensors"), recorder.mean())
    return {
        "bf16_param_dtype": str(policy.param_dtype),
        "bf16_n_averaged": averager.n_averaged,
        "bf16_average_dtypes": sorted({str(a.dtype) for a in averager.averages().values()}),
        "bf16_shard_dtypes": sorted({str(p.dtype) for p in bf16.model.parameters()}),
    }


def main(out):
    common.allow_fsdp_on_cpu()
    full = trainer(os.path.join(out, "full"))
    rank = common.rank()
    train_loss = full.train().training_loss
    assert full.is_fsdp_enabled and full.accelerator.is_fsdp2, "the Trainer did not take its FSDP2 path"
    metrics = full.evaluate()
    full.save_model(os.path.join(out, "final"))  # collective under FSDP: every rank calls it
    averager = full.swa_callback.averager
    gathered = full_averages(averager, full.model)
    common.dump_tensors(os.path.join(out, f"averages-full-rank{rank}.safetensors"), gathered)
    common.dump_tensors(
        os.path.join(out, f"candidates-full-rank{rank}.safetensors"), common.candidate_averages(averager, full.model)
    )

    trainer(os.path.join(out, "resumed"), callbacks=[StopAt(common.INTERRUPT_AT)]).train()
    resumed = trainer(os.path.join(out, "resumed"))
    resumed.train(resume_from_checkpoint=os.path.join(out, "resumed", f"checkpoint-{common.INTERRUPT_AT}"))
    common.dump_tensors(
        os.path.join(out, f"averages-resumed-rank{rank}.safetensors"),
        full_averages(resumed.swa_callback.averager, resumed.model),
    )

    bf16 = bf16_run(out, rank)

    common.dump_json(
        os.path.join(out, f"report-rank{rank}.json"),
        {
            **bf16,
            "rank": rank,
            "world_size": torch.distributed.get_world_size(),
            "train_loss": train_loss,
            "eval_loss": metrics["eval_loss"],
            "eval_swa_loss": metrics["eval_swa_loss"],
            "n_averaged": averager.n_averaged,
            "n_averaged_resumed": resumed.swa_callback.averager.n_averaged,
            "sharded": averager.sharded,
            "fsdp2_modules": len(fsdp2_modules(full.model)),
            "numel_local": sum(t.numel() for t in averager.averages().values()),
            "numel_full": sum(t.numel() for t in gathered.values()),
        },
    )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
