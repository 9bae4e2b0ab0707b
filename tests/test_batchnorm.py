"""BatchNorm models: post-hoc averages and soups take them, and training recomputes the shipped average's statistics.

Post-hoc, float buffers (running_mean, running_var) are averaged like the weights and
BatchNorm's integer counter (num_batches_tracked) is taken from the newest input. In
training, `swa_update_bn` recomputes the statistics of the shipped weights as
`torch.optim.swa_utils.update_bn` does; the tests compare with torch's function itself.
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import QUICK_RUN
from transformers import ResNetConfig, ResNetForImageClassification, TrainerCallback

from hf_swa import average_checkpoints, greedy_soup

TOLERANCE = 1e-6


def tiny_resnet(seed: int = 0) -> ResNetForImageClassification:
    torch.manual_seed(seed)
    config = ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=2
    )
    return ResNetForImageClassification(config)


def images(n: int, seed: int = 1) -> list:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 16, 16, generator=generator) * 2 + 0.5
    return [{"pixel_values": pixels[i], "labels": int(pixels[i, 0].mean() > 0.5)} for i in range(n)]


def batchnorm_run(root, steps=(10, 20, 30)) -> list:
    """Checkpoints of a BatchNorm model whose weights, running statistics and counters all differ."""
    folders = []
    for k, step in enumerate(steps):
        model = tiny_resnet(seed=k)
        model.train()
        with torch.no_grad():
            for b in range(k + 1):  # k + 1 forward passes: num_batches_tracked differs per checkpoint
                model(pixel_values=torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(10 * k + b)))
        folder = root / f"checkpoint-{step}"
        model.save_pretrained(folder)
        folders.append(folder)
    return folders


def float64_mean(folders, weights=None) -> dict:
    states = [load_file(f / "model.safetensors") for f in folders]
    weights = weights or [1 / len(states)] * len(states)
    return {
        name: sum(w * s[name].double() for w, s in zip(weights, states))
        for name, value in states[0].items()
        if value.is_floating_point()
    }


def assert_posthoc_batchnorm(output, folders, members):
    """Float tensors (weights and running statistics) are the mean of `members`; counters the newest input's."""
    written = load_file(output / "model.safetensors")
    newest = load_file(folders[-1] / "model.safetensors")
    counters = [name for name in written if name.endswith("num_batches_tracked")]
    assert len(counters) == 6  # one per BatchNorm module
    assert len({int(load_file(f / "model.safetensors")[counters[0]]) for f in folders}) == 3  # they differ
    for name in counters:
        assert written[name].dtype == torch.long and torch.equal(written[name], newest[name]), name
    expected = float64_mean(members)
    assert any(name.endswith("running_var") for name in expected)
    for name, value in expected.items():
        error = (written[name].double() - value).abs().max().item() / (value.abs().max().item() or 1.0)
        assert error <= TOLERANCE, name


def test_average_checkpoints_averages_batchnorm_statistics_and_takes_the_newest_counter(tmp_path):
    folders = batchnorm_run(tmp_path / "run")
    average_checkpoints(run_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "avg"), progress=False)
    assert_posthoc_batchnorm(tmp_path / "avg", folders, folders)
    reloaded = ResNetForImageClassification.from_pretrained(tmp_path / "avg")  # a plain Transformers model
    assert int(reloaded.resnet.embedder.embedder.normalization.num_batches_tracked) == 3


def test_cli_averages_a_batchnorm_model(tmp_path, capsys):
    from hf_swa.posthoc.cli import main

    folders = batchnorm_run(tmp_path / "run")
    assert main(["--run_dir", str(tmp_path / "run"), "--last", "3", "--output_dir", str(tmp_path / "cli")]) == 0
    assert_posthoc_batchnorm(tmp_path / "cli", folders, folders)


def test_greedy_soup_of_batchnorm_models(tmp_path):
    folders = batchnorm_run(tmp_path / "run")
    probe = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def score(model):
        return float(model(pixel_values=probe).logits[:, 0].mean())

    record = greedy_soup([str(f) for f in folders], str(tmp_path / "soup"), score, progress=False)
    members = [f for f in folders if str(f.resolve()) in record["soup"]["members"]]
    assert members
    assert_posthoc_batchnorm(tmp_path / "soup", folders, members)
    assert json.loads((tmp_path / "soup" / "swa_config.json").read_text())["method"] == "greedy_soup"


# ---------------------------------------------------------------- training: swa_update_bn

BATCH = 4


def batchnorm_statistics(model) -> dict:
    return {
        name: value.detach().clone()
        for name, value in model.named_buffers()
        if name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def assert_statistics_close(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected) and len(expected) == 18
    for name, value in expected.items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(actual[name], value), name
        else:
            error = (actual[name].double() - value.double()).abs().max().item() / value.abs().max().item()
            assert error <= TOLERANCE, (name, error)


def test_update_bn_on_dict_batches_equals_torch_update_bn_and_restores_modes():
    from hf_swa.training.batchnorm import update_bn

    data = images(20)
    ours, theirs = tiny_resnet(seed=3), tiny_resnet(seed=3)
    ours.eval()
    ours.classifier.train()  # a mixed state, to be restored module by module
    batches = [data[i : i + BATCH] for i in range(0, len(data), BATCH)]
    hf_batches = [{"pixel_values": torch.stack([r["pixel_values"] for r in b]), "labels": None} for b in batches]
    assert update_bn(ours, hf_batches) == 5
    torch.optim.swa_utils.update_bn([b["pixel_values"] for b in hf_batches], theirs)
    assert_statistics_close(batchnorm_statistics(ours), batchnorm_statistics(theirs))
    assert int(ours.resnet.embedder.embedder.normalization.num_batches_tracked) == 5
    assert ours.classifier.training and not ours.resnet.training and not ours.training
    assert all(m.momentum == 0.1 for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d))


class LiveStatistics(TrainerCallback):
    """The live BatchNorm statistics after the last optimizer step (added before the SWA callback)."""

    def __init__(self):
        self.statistics = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.statistics = batchnorm_statistics(model)


def bn_trainer(tmp_path, callbacks=(), **swa):
    """The training tests compare with torch's update_bn over the batches in order: a sequential sampler, on every
    supported transformers (5.x has train_sampling_strategy='sequential'; 4.57 has not, so the sampler is set here)."""
    from hf_swa import SWATrainer, SWATrainingArguments

    class InOrder(SWATrainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    settings = {**QUICK_RUN, "per_device_train_batch_size": BATCH, "max_steps": 6, "output_dir": str(tmp_path / "out")}
    swa = {"swa_ship": "last_window", **swa}
    args = SWATrainingArguments(**settings, swa_start=3, **swa)
    return InOrder(model=tiny_resnet(), args=args, train_dataset=images(20), callbacks=list(callbacks))


def torch_statistics_for(weights: dict) -> dict:
    """torch's update_bn over the training batches in the Trainer's (sequential) order, for `weights`."""
    model = tiny_resnet(seed=5)
    model.load_state_dict(weights, strict=False)
    data = images(20)
    batches = [torch.stack([r["pixel_values"] for r in data[i : i + BATCH]]) for i in range(0, len(data), BATCH)]
    torch.optim.swa_utils.update_bn(batches, model)
    return batchnorm_statistics(model)


def test_training_recomputes_the_statistics_of_the_shipped_average_as_torch_update_bn(tmp_path):
    live = LiveStatistics()
    trainer = bn_trainer(tmp_path, callbacks=[live])
    assert trainer.swa_callback.config.swa_update_bn is None  # the default: on, since the model has BatchNorm
    trainer.train()
    averager = trainer.swa_callback.averager
    shipped = batchnorm_statistics(trainer.model)
    assert averager.held == "swa_from6"  # the last window (swa_ship): snapshots 3..6 in 4 windows
    assert_statistics_close(shipped, torch_statistics_for(averager.averages(averager.held)))
    name = "resnet.embedder.embedder.normalization.running_mean"
    assert (shipped[name] - live.statistics[name]).abs().max() > 1e-3  # the recomputation changed them
    with trainer.swa_callback.live_weights(trainer.model):  # the live weights come back with their statistics
        assert all(torch.equal(v, live.statistics[k]) for k, v in batchnorm_statistics(trainer.model).items())
    assert all(torch.equal(v, shipped[k]) for k, v in batchnorm_statistics(trainer.model).items())
    trainer.save_model(str(tmp_path / "final"))
    saved = batchnorm_statistics(ResNetForImageClassification.from_pretrained(tmp_path / "final"))
    assert all(torch.equal(v, shipped[k]) for k, v in saved.items())


def test_selection_scores_and_ships_each_candidate_with_its_own_statistics(tmp_path):
    trainer = bn_trainer(tmp_path, swa_windows=2, swa_select_metric="none")  # select() scores "score", higher better
    trainer.train()
    callback = trainer.swa_callback
    later = callback.averager.candidate_names()[1]
    seen = {}

    def score(model):
        name = callback.averager.held or "live"
        seen[name] = batchnorm_statistics(model)
        return 1.0 if name == later else 0.0

    assert callback.select(trainer.model, score)["chosen"] == later
    expected = torch_statistics_for(callback.averager.averages(later))
    assert_statistics_close(seen[later], expected)
    assert_statistics_close(batchnorm_statistics(trainer.model), expected)


def test_swa_update_bn_off_ships_the_live_statistics(tmp_path):
    live = LiveStatistics()
    trainer = bn_trainer(tmp_path, callbacks=[live], swa_update_bn=False)
    trainer.train()
    assert trainer.swa_callback.averager.held == "swa_from6"
    assert all(torch.equal(v, live.statistics[k]) for k, v in batchnorm_statistics(trainer.model).items())


def test_swa_update_bn_without_training_data_is_refused_saying_what_to_do(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_swa import SWACallback

    callback = SWACallback(swa_start=1)
    args = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    state = TrainerState(max_steps=4)
    with pytest.raises(ValueError, match=r"swa_update_bn.*no train_dataloader.*swa_update_bn=False"):
        callback.on_train_begin(args, state, TrainerControl(), model=tiny_resnet(), train_dataloader=None)


def test_the_live_weights_shipped_keep_their_statistics_and_each_average_gets_its_own(tmp_path):
    """swa_ship="live" (the default): the model keeps the live statistics, and an average evaluated or chosen after
    training gets the statistics recomputed for its own weights, as torch's update_bn."""
    live = LiveStatistics()
    trainer = bn_trainer(tmp_path, callbacks=[live], swa_ship="live")
    trainer.train()
    callback = trainer.swa_callback
    assert callback.averager.held is None
    assert all(torch.equal(v, live.statistics[k]) for k, v in batchnorm_statistics(trainer.model).items())
    with callback.averaged_weights(trainer.model, "swa"):
        expected = torch_statistics_for(callback.averager.averages("swa"))
        assert_statistics_close(batchnorm_statistics(trainer.model), expected)
    assert all(torch.equal(v, live.statistics[k]) for k, v in batchnorm_statistics(trainer.model).items())
