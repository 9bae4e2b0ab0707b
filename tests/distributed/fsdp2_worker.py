"""FSDP2 worker: `torchrun --nproc_per_node 2 fsdp2_worker.py OUT` (raw torch FSDP2 over gloo on CPU).

Accelerate enables FSDP only on GPUs (on CPU it silently falls back to DDP), so this drives
the pieces the Trainer would drive: a `fully_shard`ed tiny BERT trained with SGD, the
SWACallback's hooks called as the Trainer calls them (on_train_begin, on_step_end,
on_save, resume), next to an unsharded copy that sees the whole global batch and a
WeightAverager of its own. Each rank dumps what tests/test_distributed.py compares.
"""

import os
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import TrainerControl, TrainerState

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from hf_swa import SWACallback, SWAConfig, WeightAverager  # noqa: E402
from hf_swa.averaging.averager import local_tensor  # noqa: E402
from hf_swa.averaging.distributed import full_averages  # noqa: E402

LR = 0.5
# No LR tail (this loop has no scheduler); the model ships swa, the mean of every snapshot.
CONFIG = SWAConfig(swa_start=3, swa_freq=2, swa_lr_ratio=0.0, swa_ship="swa")
PER_RANK = common.GLOBAL_BATCH // common.WORLD_SIZE
GATHERS = ("all_gather", "all_gather_into_tensor", "all_gather_object", "broadcast", "gather", "all_to_all")


def batch(step, lo=0, hi=common.GLOBAL_BATCH):
    start = ((step - 1) * common.GLOBAL_BATCH) % len(common.TRAIN_DATA)
    items = common.TRAIN_DATA[start + lo : start + hi]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def sharded_model(mesh):
    model = common.tiny_bert_without_dropout()
    for layer in model.bert.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def sgd_step(model, optimizer, inputs):
    model.train()
    model(**inputs).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class CollectiveCounter:
    """Counts gathering collectives (and all-reduces) while active."""

    def __init__(self):
        self.calls = {name: 0 for name in GATHERS + ("all_reduce",)}
        self._saved = {}

    def __enter__(self):
        for name in self.calls:
            original = getattr(dist, name)
            self._saved[name] = original

            def counted(*args, _name=name, _original=original, **kwargs):
                self.calls[_name] += 1
                return _original(*args, **kwargs)

            setattr(dist, name, counted)
        return self

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(dist, name, original)


def run(mesh, rank, output_dir, resume_from=None, weights_at_resume=None, config=CONFIG):
    """Train steps 1..MAX_STEPS (or from the resumed step); returns the callback, the model and the saved shards."""
    model = sharded_model(mesh)
    start = 0
    if resume_from is not None:
        with torch.no_grad():
            for (_, p), saved in zip(model.named_parameters(), weights_at_resume):
                local_tensor(p).copy_(saved)
        start = common.INTERRUPT_AT
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    callback = SWACallback(config)
    callback.resume_from_checkpoint = resume_from
    args = SimpleNamespace(
        output_dir=output_dir,
        should_save=rank == 0,
        load_best_model_at_end=False,
        lr_scheduler_type="constant",
        resume_from_checkpoint=None,
    )
    state, control = TrainerState(max_steps=common.MAX_STEPS, global_step=start), TrainerControl()
    callback.on_train_begin(args, state, control, model=model, lr_scheduler=None)
    counter, saved_shards = CollectiveCounter(), None
    for step in range(start + 1, common.MAX_STEPS + 1):
        sgd_step(model, optimizer, batch(step, rank * PER_RANK, (rank + 1) * PER_RANK))
        if step == 4:  # an evaluation forward leaves the root's parameters unsharded
            model.eval()
            with torch.no_grad():
                model(**batch(1))
        state.global_step = step
        with counter:
            callback.on_step_end(args, state, control, model=model)
        if step == common.INTERRUPT_AT and resume_from is None:
            callback.on_save(args, state, control)  # Trainer: after writing checkpoint-N/
            saved_shards = [local_tensor(p).detach().clone() for p in model.parameters()]
    callback.on_train_end(args, state, control, model=model)
    return callback, model, saved_shards, counter.calls


def main(out):
    dist.init_process_group("gloo")
    assert dist.get_world_size() == common.WORLD_SIZE, dist.get_world_size()
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (common.WORLD_SIZE,))

    # The unsharded reference: the whole global batch each step, its own averager.
    reference = common.tiny_bert_without_dropout()
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    ref_averager = WeightAverager(reference)
    for step in range(1, common.MAX_STEPS + 1):
        sgd_step(reference, ref_optimizer, batch(step))
        if CONFIG.is_snapshot_step(step, common.MAX_STEPS):
            ref_averager.update(reference)

    # FSDP1 flattens parameters: refused up front, with the fix in the message.
    from torch.distributed.fsdp import FullyShardedDataParallel

    try:
        WeightAverager(FullyShardedDataParallel(common.tiny_bert_without_dropout(), device_id=torch.device("cpu")))
        fsdp1_error = ""
    except ValueError as error:
        fsdp1_error = str(error)

    output_dir = os.path.join(out, "run")
    callback, model, saved_shards, calls = run(mesh, rank, output_dir)
    averager = callback.averager
    full = full_averages(averager, model)  # collective: only to save
    # What Accelerate saves for FSDP2 (full state dict): the model holds the averages after training.
    saved_model = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    saved_model = {name: saved_model[name] for name in averager.names if name in saved_model}  # rank 0 only

    inputs = batch(2)
    model.eval()
    reference.eval()
    with torch.no_grad():
        out_average = model(**inputs).logits  # leaves the root unsharded: the swaps below must reshard
        with callback.live_weights(model):
            out_live = model(**inputs).logits
        out_average_again = model(**inputs).logits
        ref_live = reference(**inputs).logits
        with ref_averager.averaged_weights(reference):
            ref_average = reference(**inputs).logits

    resumed, _, _, _ = run(
        mesh,
        rank,
        os.path.join(out, "resumed"),
        resume_from=os.path.join(output_dir, f"checkpoint-{common.INTERRUPT_AT}"),
        weights_at_resume=saved_shards,
    )

    local = averager.averages()
    numel_local = sum(t.numel() for t in local.values())
    numel_full = sum(t.numel() for t in full.values())
    common.dump_tensors(os.path.join(out, f"full-rank{rank}.safetensors"), full)
    if saved_model:
        common.dump_tensors(os.path.join(out, f"saved-model-rank{rank}.safetensors"), saved_model)
    common.dump_tensors(os.path.join(out, f"local-rank{rank}.safetensors"), local)
    common.dump_tensors(os.path.join(out, f"local-resumed-rank{rank}.safetensors"), resumed.averager.averages())
    common.dump_tensors(os.path.join(out, f"reference-rank{rank}.safetensors"), ref_averager.averages())
    common.dump_tensors(
        os.path.join(out, f"outputs-rank{rank}.safetensors"),
        {
            "average": out_average,
            "live": out_live,
            "average_again": out_average_again,
            "reference_live": ref_live,
            "reference_average": ref_average,
        },
    )
    common.dump_json(
        os.path.join(out, f"report-rank{rank}.json"),
        {
            "rank": rank,
            "world_size": dist.get_world_size(),
            "sharded": averager.sharded,
            "n_averaged": averager.n_averaged,
            "n_averaged_resumed": resumed.averager.n_averaged,
            "numel_local": numel_local,
            "numel_full": numel_full,
            "collectives_in_updates": calls,
            "updates": averager.n_averaged,
            "holds_averages": averager.holds_averages,
            "fsdp1_error": fsdp1_error,
        },
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
