"""BatchNorm models: post-hoc averages and soups take them, and training recomputes the shipped average's statistics.

Post-hoc, float buffers (running_mean, running_var) are averaged like the weights and
BatchNorm's integer counter (num_batches_tracked) is taken from the newest input. In
training, `swa_update_bn` recomputes the statistics of the shipped weights as
`torch.optim.swa_utils.update_bn` does; the tests compare with torch's function itself.
"""

import json

import torch
from safetensors.torch import load_file
from transformers import ResNetConfig, ResNetForImageClassification

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
