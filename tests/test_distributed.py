"""Multi-process SWA for real: 2 processes over gloo on CPU, each launch on its own port.

Each test launches a worker from tests/distributed/ (DDP through `accelerate launch`,
FSDP2, raw and through SWATrainer, and DeepSpeed through `torchrun`), which dumps its numbers per rank; the test
compares them with a single-process run of the same settings and the same global batch
(per-process batch x 2), so both runs see the same samples in the same order.

Tolerance: averages are compared as max |a - b| over all tensors divided by max |b|
over all tensors (relative to the weights' scale), at 1e-6. The runs differ only in
float rounding (gradients summed across processes in another order; measured ~1e-7).
The workers train with SGD (the FSDP2 Trainer worker with momentum): Adam turns the rounding noise of gradients that are
mathematically zero (BERT's attention key bias) into LR-sized steps, so no two
reduction orders agree on those weights.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from hf_swa import SWATrainer, SWATrainingArguments, WeightAverager
from hf_swa.checkpointing.state import load_swa_state

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed"))
import common  # noqa: E402
from tiny_models import TRANSFORMERS_4  # noqa: E402

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# On transformers 4.57 runs that should agree land up to 6e-5 apart (measured: accumulation and DDP round differently
# there); a loss scaled wrongly would be orders further (plain SGD at lr 0.5).
TOLERANCE = 1e-4 if TRANSFORMERS_4 else 1e-6
METRIC_TOLERANCE = 1e-4 if TRANSFORMERS_4 else 1e-5  # losses and scores, relative
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: list, script: str, *args, tmp_path, timeout=300) -> None:
    """Run `script` under `launcher` with 2 processes; fail with the output's tail if it fails.

    A rank killed by SIGABRT from gloo's C++ side ("terminate called without an active exception", seen once in a
    full CI run here) is launched once more; any other failure, or a second abort, fails the test.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONUNBUFFERED="1")
    env.pop("ACCELERATE_USE_CPU", None)
    command = [sys.executable, "-m", *launcher, os.path.join(WORKERS, script), *map(str, args)]
    for _attempt in range(2):
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        output = (result.stdout + result.stderr)[-6000:]
        if result.returncode == 0 or "terminate called without an active exception" not in output:
            break
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{output}"


def accelerate_launch(tmp_path) -> list:
    # `--cpu --num_processes 2` silently runs ONE process; `--multi_gpu` with use_cpu=True in the
    # TrainingArguments runs two over gloo (the workers assert world_size == 2).
    return [
        "accelerate.commands.accelerate_cli",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]


def torchrun() -> list:
    return [
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
    ]


def relative_error(actual: dict, expected: dict) -> float:
    """max |a - e| over all tensors / max |e| over all tensors."""
    assert set(actual) == set(expected), sorted(set(actual) ^ set(expected))
    diff = max((actual[k].double() - expected[k].double()).abs().max().item() for k in expected)
    return diff / max(expected[k].abs().max().item() for k in expected)


def reports(folder) -> list:
    return [json.loads((folder / f"report-rank{r}.json").read_text()) for r in range(common.WORLD_SIZE)]


def run_single_process(output_dir, **train):
    """The workers' settings in one process with the whole global batch."""
    args = SWATrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=common.GLOBAL_BATCH, **common.SWA, **train
    )
    model = common.tiny_bert_without_dropout()
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = SWATrainer(model=model, args=args, train_dataset=common.TRAIN_DATA, eval_dataset=common.EVAL_DATA)
    train_loss = trainer.train().training_loss
    metrics = trainer.evaluate()
    averages = {k: v.clone() for k, v in trainer.swa_callback.averager.averages().items()}
    # The runs must move the weights, or equal averages would prove nothing.
    assert relative_error({k: initial[k] for k in averages}, averages) > 1e-2
    candidates = {
        k: v.clone() for k, v in common.candidate_averages(trainer.swa_callback.averager, trainer.model).items()
    }
    snapshots = output_dir / "swa_power_ema"
    return {"averages": averages, "candidates": candidates, "train_loss": train_loss, "snapshots": snapshots, **metrics}


def assert_power_ema_snapshots_match(folder, single):
    """Written once, as the single process writes them; the resumed run's equal the full run's, bit for bit."""
    expected = sorted(p.name for p in single["snapshots"].iterdir())
    assert len(expected) == 2 * 2  # widths 0.05 and 0.1, at steps 4 and 8
    full, resumed = folder / "full" / "swa_power_ema", folder / "resumed" / "swa_power_ema"
    assert sorted(p.name for p in full.iterdir()) == sorted(p.name for p in resumed.iterdir()) == expected
    for name in expected:
        reference = load_file(full / name)
        assert relative_error(reference, load_file(single["snapshots"] / name)) <= TOLERANCE, name
        again = load_file(resumed / name)
        assert all(torch.equal(again[k], reference[k]) for k in reference), name


def assert_candidates_match(folder, single):
    """Every rank's candidates (windows, EMA) equal the single-process ones; the candidates differ from each other."""
    for r in range(common.WORLD_SIZE):
        assert (
            relative_error(load_file(folder / f"candidates-full-rank{r}.safetensors"), single["candidates"])
            <= TOLERANCE
        )
    by_name = {
        name: {k: v for k, v in single["candidates"].items() if k.startswith(f"{name}/")} for name in common.CANDIDATES
    }
    assert (
        relative_error({k.replace("swa_from5/", "swa/"): v for k, v in by_name["swa_from5"].items()}, by_name["swa"])
        > 1e-3
    )


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    return run_single_process(tmp_path_factory.mktemp("single"), **common.TRAIN)


def assert_same_metrics(report, single_process):
    for key in ("eval_loss", "eval_swa_loss"):
        assert report[key] == pytest.approx(single_process[key], rel=METRIC_TOLERANCE), key


def assert_saved_model_is_average(folder, averages):
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))  # plain transformers
    weights = {k: v for k, v in model.state_dict().items() if k in averages}
    assert relative_error(weights, averages) <= TOLERANCE
    assert json.loads((folder / "swa_config.json").read_text())["n_averaged"] == 3


@pytest.mark.distributed
def test_ddp_ranks_hold_the_single_process_average_and_resume(tmp_path, single_process):
    launch(accelerate_launch(tmp_path), "ddp_worker.py", tmp_path, tmp_path=tmp_path)
    assert_candidates_match(tmp_path, single_process)
    assert_power_ema_snapshots_match(tmp_path, single_process)
    rank0, rank1 = reports(tmp_path)
    assert rank0["world_size"] == rank1["world_size"] == 2
    full = [load_file(tmp_path / f"averages-full-rank{r}.safetensors") for r in range(2)]
    # Every rank holds the same averages, equal to the single-process average of the same global batches.
    assert all(torch.equal(full[0][k], full[1][k]) for k in full[0])
    assert relative_error(full[0], single_process["averages"]) <= TOLERANCE
    assert rank0["n_averaged"] == rank1["n_averaged"] == 3
    # Losses as a single process reports them (transformers alone reports BERT's eval loss x 2 here).
    for report in (rank0, rank1):
        assert_same_metrics(report, single_process)
    # train_loss is each rank's own mean (transformers gathers it only at logging steps).
    assert (rank0["train_loss"] + rank1["train_loss"]) / 2 == pytest.approx(
        single_process["train_loss"], rel=METRIC_TOLERANCE
    )
    # Only the main process writes SWA state and swa_config.json.
    assert rank0["writes_all_runs"]["save_swa_state"] == 4 and rank0["writes_all_runs"]["write_config"] > 0
    assert rank1["writes_all_runs"] == {"save_swa_state": 0, "write_config": 0}
    assert (tmp_path / "full" / "checkpoint-5" / "swa_averages.safetensors").is_file()
    assert_saved_model_is_average(tmp_path / "final", single_process["averages"])
    # Interrupted after checkpoint-5 and resumed: the same averages, bit for bit, on every rank.
    for r in range(2):
        resumed = load_file(tmp_path / f"averages-resumed-rank{r}.safetensors")
        assert all(torch.equal(resumed[k], full[0][k]) for k in resumed)
        assert reports(tmp_path)[r]["n_averaged_resumed"] == 3


@pytest.mark.distributed
def test_fsdp2_through_swa_trainer_matches_single_process_and_resumes(tmp_path):
    """Accelerate's FSDP2 path under SWATrainer (the gate that keeps it off CPUs lifted: see the worker)."""
    single = run_single_process(tmp_path / "single", **dict(common.TRAIN, optim_args=common.FSDP_OPTIM_ARGS))
    launch(torchrun(), "fsdp2_trainer_worker.py", tmp_path, tmp_path=tmp_path)
    rank0, rank1 = reports(tmp_path)
    for report in (rank0, rank1):
        # Each rank averaged its own half of the weights.
        assert report["world_size"] == 2 and report["sharded"] and report["fsdp2_modules"] > 1
        assert report["numel_local"] <= 0.55 * report["numel_full"]
        assert report["n_averaged"] == report["n_averaged_resumed"] == 3
        assert_same_metrics(report, single)
    assert (rank0["train_loss"] + rank1["train_loss"]) / 2 == pytest.approx(single["train_loss"], rel=METRIC_TOLERANCE)
    # Gathered from the shards: the single-process average, on both ranks.
    full = [load_file(tmp_path / f"averages-full-rank{r}.safetensors") for r in range(2)]
    assert all(torch.equal(full[0][k], full[1][k]) for k in full[0])
    assert relative_error(full[0], single["averages"]) <= TOLERANCE
    assert_candidates_match(tmp_path, single)
    assert_power_ema_snapshots_match(tmp_path, single)  # gathered from the shards, written once
    # What the Trainer saved (Accelerate's full state dict) loads in plain transformers as the average.
    assert_saved_model_is_average(tmp_path / "final", single["averages"])
    # The last checkpoint is training state: the live weights with the SWA state beside them.
    last = tmp_path / "full" / f"checkpoint-{common.MAX_STEPS}"
    assert not (last / "swa_config.json").exists()
    assert json.loads((last / "swa_state.json").read_text())["n_averaged"] == 3
    checkpoint = tmp_path / "full" / f"checkpoint-{common.INTERRUPT_AT}"
    assert sorted(p.name for p in checkpoint.glob("swa_averages*")) == [
        "swa_averages-rank0.safetensors",
        "swa_averages-rank1.safetensors",
    ]
    # Interrupted after checkpoint-5 and resumed through Accelerate's FSDP checkpoint: the same averages.
    for r in range(2):
        resumed = load_file(tmp_path / f"averages-resumed-rank{r}.safetensors")
        assert all(torch.equal(resumed[k], full[0][k]) for k in full[0])
    # bf16: FSDP2 computes in bf16 from fp32 shards; the averages are fp32 means of those shards.
    for r, report in enumerate((rank0, rank1)):
        assert report["bf16_param_dtype"] == "torch.bfloat16" and report["bf16_n_averaged"] == 3
        assert report["bf16_shard_dtypes"] == report["bf16_average_dtypes"] == ["torch.float32"]
        averages = load_file(tmp_path / f"averages-bf16-rank{r}.safetensors")
        recorded = load_file(tmp_path / f"recorded-mean-bf16-rank{r}.safetensors")
        assert relative_error(averages, recorded) <= TOLERANCE
        assert relative_error(averages, full[0]) > 1e-4  # bf16 compute changed the trajectory


@pytest.mark.distributed
def test_fsdp2_shards_average_locally_and_gather_only_to_save(tmp_path):
    launch(torchrun(), "fsdp2_worker.py", tmp_path, tmp_path=tmp_path)
    reports_ = reports(tmp_path)
    reference = load_file(tmp_path / "reference-rank0.safetensors")
    scale = max(value.abs().max().item() for value in reference.values())
    for rank, report in enumerate(reports_):
        assert report["world_size"] == 2 and report["sharded"] and report["holds_averages"]
        # FSDP1 is refused up front, naming the fix.
        assert "FSDP1" in report["fsdp1_error"] and "fsdp_version: 2" in report["fsdp1_error"]
        # Each rank holds only its shard of the averages: half the model here.
        assert report["numel_local"] <= 0.55 * report["numel_full"]
        local = load_file(tmp_path / f"local-rank{rank}.safetensors")
        for name, value in local.items():
            expected = torch.chunk(reference[name], 2, dim=0)[rank]  # FSDP2 shards dim 0 like torch.chunk
            assert value.shape == expected.shape, name
            if value.numel():
                assert (value - expected).abs().max().item() <= TOLERANCE * scale, name
        # No gather per step: 3 updates, each one scalar all-reduce (the NaN/inf check) and nothing else.
        calls = report["collectives_in_updates"]
        assert calls.pop("all_reduce") == report["updates"] == 3
        assert sum(calls.values()) == 0, calls
        # The full averages, gathered once, equal the unsharded model's average.
        assert relative_error(load_file(tmp_path / f"full-rank{rank}.safetensors"), reference) <= TOLERANCE
        # Resumed from checkpoint-5 (per-rank state files): the same averages, bit for bit.
        resumed = load_file(tmp_path / f"local-resumed-rank{rank}.safetensors")
        assert report["n_averaged_resumed"] == 3 and all(torch.equal(resumed[k], local[k]) for k in local)
    # What a full-state-dict save of the model (as Accelerate does for FSDP2) writes: the average.
    assert relative_error(load_file(tmp_path / "saved-model-rank0.safetensors"), reference) <= TOLERANCE
    # Swapping after an evaluation forward (root left unsharded) still changes what the model computes.
    out = load_file(tmp_path / "outputs-rank0.safetensors")
    assert torch.allclose(out["average"], out["reference_average"], atol=1e-6)
    assert torch.allclose(out["average_again"], out["reference_average"], atol=1e-6)
    assert torch.allclose(out["live"], out["reference_live"], atol=1e-6)
    assert (out["live"] - out["average"]).abs().max() > 1e-3
    # The checkpoint holds one file a rank; resuming with another world size or unsharded is refused.
    checkpoint = tmp_path / "run" / f"checkpoint-{common.INTERRUPT_AT}"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "swa_averages-rank0.safetensors",
        "swa_averages-rank1.safetensors",
        "swa_state.json",
    ]
    assert load_swa_state(str(checkpoint), shard=(1, 2))["n_averaged"] == 2
    for shard in (None, (0, 4)):
        with pytest.raises(ValueError, match="sharded over 2 processes"):
            load_swa_state(str(checkpoint), shard=shard)


@pytest.mark.distributed
@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (pip install -e '.[deepspeed]')")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_matches_single_process(tmp_path, single_process, stage):
    launch(torchrun(), "deepspeed_worker.py", stage, tmp_path, tmp_path=tmp_path)
    rank0, rank1 = reports(tmp_path)
    full = [load_file(tmp_path / f"averages-full-rank{r}.safetensors") for r in range(2)]
    assert all(torch.equal(full[0][k], full[1][k]) for k in full[0])
    assert relative_error(full[0], single_process["averages"]) <= TOLERANCE
    for report in (rank0, rank1):
        assert report["world_size"] == 2 and report["n_averaged"] == 3
        assert report["sharded"] == (stage == 3)
        # ZeRO-3: each rank averages its own partition (half the model); ZeRO-2: the whole model.
        if stage == 3:
            assert report["numel_local"] <= 0.55 * report["numel_full"]
        else:
            assert report["numel_local"] == report["numel_full"]
        assert report["deep_copied_modules"] == []
        assert_same_metrics(report, single_process)
    checkpoint = tmp_path / "full" / f"checkpoint-{common.INTERRUPT_AT}"
    names = {p.name for p in checkpoint.iterdir() if p.name.startswith("swa_averages")}
    expected = (
        {"swa_averages-rank0.safetensors", "swa_averages-rank1.safetensors"}
        if stage == 3
        else {"swa_averages.safetensors"}
    )
    assert names == expected
    assert_saved_model_is_average(tmp_path / "final", single_process["averages"])
    resumed = load_file(tmp_path / "averages-resumed-rank0.safetensors")
    assert rank0["n_averaged_resumed"] == 3 and all(torch.equal(resumed[k], full[0][k]) for k in resumed)
    assert_power_ema_snapshots_match(tmp_path, single_process)  # ZeRO-3: gathered from the partitions


def test_deepspeed_scheduler_with_swa_lr_is_refused_before_anything_runs(tmp_path):
    config = {"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR", "params": {}}}
    with pytest.raises(ValueError, match="Remove 'scheduler' from the DeepSpeed config"):
        SWATrainingArguments(output_dir=str(tmp_path), deepspeed=config, swa_lr=1e-5, use_cpu=True)


def test_a_declared_mean_loss_is_averaged_over_accumulation_like_one_big_batch(tmp_path):
    """The loss scaling behind the DDP numbers, in one process: BERT declared a mean loss (declare_mean_loss),
    2 x 4 accumulated samples train like one batch of 8 (transformers alone sums the two losses)."""

    def averages(batch, accumulation):
        args = SWATrainingArguments(
            output_dir=str(tmp_path / f"ga{accumulation}"),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            **common.SWA,
            **common.TRAIN,
        )
        trainer = SWATrainer(model=common.tiny_bert_without_dropout(), args=args, train_dataset=common.TRAIN_DATA)
        assert trainer.model_accepts_loss_kwargs is False
        trainer.train()
        return trainer.swa_callback.averager.averages()

    assert relative_error(averages(4, 2), averages(8, 1)) <= TOLERANCE


def test_fsdp1_is_refused_when_the_arguments_are_parsed(tmp_path):
    with pytest.raises(ValueError, match="FSDP1.*Use FSDP2"):
        SWATrainingArguments(output_dir=str(tmp_path), fsdp=True, fsdp_config={"version": 1}, use_cpu=True)
    args = SWATrainingArguments(output_dir=str(tmp_path), fsdp=True, fsdp_config={"version": 2}, use_cpu=True)
    assert args.fsdp_config["version"] == 2


def test_averager_on_one_process_is_not_sharded():
    averager = WeightAverager(common.tiny_bert_without_dropout())
    assert averager.sharded is False


def test_loss_heuristic_follows_the_model_classes_and_their_own_declarations(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_swa.training.loss_kwargs import declare_mean_loss, loss_uses_num_items_in_batch

    lm = GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=10))
    assert loss_uses_num_items_in_batch(lm) is True
    assert loss_uses_num_items_in_batch(torch.compile(lm)) is True  # looks through the compile wrapper
    assert loss_uses_num_items_in_batch(torch.nn.Module()) is None  # no forward of its own to read
    assert declare_mean_loss(lm) is False and not hasattr(lm, "accepts_loss_kwargs")

    class DeclaresItself(type(common.tiny_bert(seed=0))):
        accepts_loss_kwargs = True

    model = common.tiny_bert(seed=0)
    model.__class__ = DeclaresItself
    assert declare_mean_loss(model) is False and model.accepts_loss_kwargs is True  # its own word wins


@pytest.mark.distributed
def test_two_processes_train_as_the_plain_trainer_bit_for_bit_with_accumulation(tmp_path):
    launch(accelerate_launch(tmp_path), "plain_parity_worker.py", tmp_path, tmp_path=tmp_path)
    for r in range(common.WORLD_SIZE):
        plain = load_file(tmp_path / f"plain-rank{r}.safetensors")
        losses = json.loads((tmp_path / f"losses-rank{r}.json").read_text())
        assert losses["no_swa"] == losses["plain"] and losses["swa"] == losses["plain"]
        for run in ("no_swa", "swa"):
            weights = load_file(tmp_path / f"{run}-rank{r}.safetensors")
            assert set(weights) == set(plain) and all(torch.equal(weights[k], plain[k]) for k in plain), run
