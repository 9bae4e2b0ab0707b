"""Trains with SWA and is killed with SIGKILL at seeded random moments, resuming each time.

Run as ``python kill_worker.py OUT SEED``. The process imports torch and transformers once
and forks each training run, so that a kill costs no new interpreter; it runs no torch
op itself before forking, so each child starts with fresh thread pools.

- ``OUT/reference``: one uninterrupted run.
- ``OUT/killed``: runs that each resume with ``train(resume_from_checkpoint=True)`` and are
  killed, until one finishes. Half of the kills land at a random moment of training,
  half at a random moment while a checkpoint is written: there each checkpoint waits
  ``SLOW_SAVE_S`` between writing the optimizer and writing ``trainer_state.json``, as on
  a slow disk, so such a kill leaves a partial ``checkpoint-N/``.

Each finished run writes ``result.safetensors`` (averages, power EMAs, live weights, the
weights the model holds) beside its power-EMA snapshots (``swa_power_ema/``);
``report.json`` records the kills and the incomplete checkpoints left.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from safetensors.torch import save_file  # noqa: E402
from tiny_models import QUICK_RUN, classification_data, tiny_bert  # noqa: E402

from hf_swa import SWATrainer, SWATrainingArguments  # noqa: E402
from hf_swa.checkpointing.resume import checkpoint_problems  # noqa: E402

MAX_STEPS = 16
SWA = dict(swa_start=5, swa_freq=1, swa_lr=4e-3, swa_anneal_steps=3, swa_anneal_strategy="linear")
# Power EMAs from step 1, snapshots every 3 steps (and at the last): they too must survive every kill.
SWA.update(swa_power_ema_stds=[0.05, 0.1], swa_power_ema_every=3)
COMMON = dict(QUICK_RUN, save_strategy="steps", save_steps=2, max_steps=MAX_STEPS)
SLOW_SAVE_S = 0.4
KILLS = 4


class ReportingTrainer(SWATrainer):
    """Tells the supervisor when a checkpoint write starts; optionally writes it slowly."""

    pipe = None
    slow = False

    def _save_checkpoint(self, model, trial):
        os.write(self.pipe, b"save\n")
        super()._save_checkpoint(model, trial)

    def _save_rng_state(self, output_dir):
        if self.slow:
            time.sleep(SLOW_SAVE_S)  # between the optimizer and trainer_state.json
        super()._save_rng_state(output_dir)


def train(output_dir: str, pipe: int, slow: bool) -> None:
    import torch

    torch.set_num_threads(1)
    ReportingTrainer.pipe, ReportingTrainer.slow = pipe, slow
    args = SWATrainingArguments(output_dir=output_dir, **SWA, **COMMON)
    trainer = ReportingTrainer(model=tiny_bert(), args=args, train_dataset=classification_data(40))
    resume = os.path.isdir(output_dir) and any(n.startswith("checkpoint-") for n in os.listdir(output_dir))
    os.write(pipe, b"ready\n")
    trainer.train(resume_from_checkpoint=True if resume else None)
    averager = trainer.swa_callback.averager
    tensors = {f"average.{k}": v for k, v in averager.averages().items()}
    for name in ("pema_0.05", "pema_0.1"):
        tensors.update({f"{name}.{k}": v for k, v in averager.averages(name).items()})
    tensors.update({f"model.{k}": v for k, v in trainer.model.state_dict().items()})
    with averager.live_weights(trainer.model):
        tensors.update({f"live.{k}": v.clone() for k, v in trainer.model.state_dict().items()})
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        os.path.join(output_dir, "result.safetensors"),
        metadata={"n_averaged": str(averager.n_averaged)},
    )


class Child:
    """A forked training run and the messages it sends."""

    def __init__(self, output_dir: str, slow: bool):
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read)
            code = 0
            try:
                train(output_dir, write, slow)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        os.close(write)
        self.fd, self.seen = read, b""

    def wait_for(self, what: str, count: int = 1, timeout: float = 120.0) -> bool:
        """Wait until the child sent `what` `count` times; False if it ended first."""
        deadline = time.time() + timeout
        while self.seen.count(what.encode() + b"\n") < count:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.time()))
            chunk = os.read(self.fd, 4096) if ready else b""
            if not chunk:
                return False
            self.seen += chunk
        self.seen = self.seen.replace(what.encode() + b"\n", b"", count)
        return True

    def finish(self) -> int:
        while os.read(self.fd, 4096):
            pass
        os.close(self.fd)
        return os.waitpid(self.pid, 0)[1]


def incomplete_checkpoints(output_dir: str) -> list:
    names = [n for n in os.listdir(output_dir) if n.startswith("checkpoint-")]
    return sorted(n for n in names if checkpoint_problems(os.path.join(output_dir, n)))


def main(out: str, seed: int) -> None:
    rng = random.Random(seed)
    if Child(os.path.join(out, "reference"), slow=False).finish() != 0:
        raise SystemExit("the reference run failed")

    killed_dir = os.path.join(out, "killed")
    report = {"kills": [], "finished_early": 0}
    for attempt in range(KILLS):
        child = Child(killed_dir, slow=True)
        if not child.wait_for("ready"):
            raise SystemExit(f"run {attempt} failed before training")
        if attempt % 2 == 0:  # while a checkpoint is written
            moment = {"during_save": rng.randint(1, 3), "delay": rng.uniform(0.0, SLOW_SAVE_S * 0.8)}
            reached = child.wait_for("save", moment["during_save"])
        else:  # anywhere in training
            moment = {"delay": rng.uniform(0.0, 1.5)}
            reached = True
        if reached:
            time.sleep(moment["delay"])
            os.kill(child.pid, signal.SIGKILL)
        status = child.finish()
        if not os.WIFSIGNALED(status):
            report["finished_early"] += 1
            if os.WEXITSTATUS(status) != 0:
                raise SystemExit(f"run {attempt} failed")
            break
        report["kills"].append(dict(moment, incomplete=incomplete_checkpoints(killed_dir)))
    if not os.path.isfile(os.path.join(killed_dir, "result.safetensors")):
        if Child(killed_dir, slow=False).finish() != 0:
            raise SystemExit("the last resumed run failed")
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
