"""The averaging engine on its own: numbers against independently computed means."""

import pytest
import torch
from tiny_models import max_relative_error, tiny_bert, tiny_gpt2_lm, trainable_float_weights
from torch import nn

from hf_swa import WeightAverager
from hf_swa.averaging.averager import averaged_parameters


def perturb(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator).to(p.dtype) * 0.1)


def run_snapshots(model, averager, n):
    snapshots = []
    for seed in range(n):
        perturb(model, seed)
        assert averager.update(model)
        snapshots.append(trainable_float_weights(model))
    mean = {k: torch.stack([s[k] for s in snapshots]).mean(0) for k in snapshots[0]}
    return snapshots, mean


@pytest.mark.parametrize("device", [None, "cpu"])
def test_uniform_average_equals_mean_of_snapshots(device):
    model = tiny_bert()
    averager = WeightAverager(model, device=device)
    _, mean = run_snapshots(model, averager, 7)
    assert averager.n_averaged == 7
    assert all(a.dtype == torch.float32 for a in averager.averages().values())
    assert max_relative_error(averager.averages(), mean) <= 1e-6


def test_tied_weights_are_averaged_once_and_stay_tied():
    model = tiny_gpt2_lm()
    assert model.lm_head.weight is model.transformer.wte.weight
    names = [n for n, _ in averaged_parameters(model)]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    averager = WeightAverager(model)
    _, mean = run_snapshots(model, averager, 3)
    averager.copy_to(model)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert max_relative_error(trainable_float_weights(model), mean) <= 1e-6


def test_frozen_parameters_and_buffers_are_not_averaged():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    model(torch.randn(8, 4))  # moves BatchNorm's running stats and its integer counter
    averager = WeightAverager(model)
    assert averager.names == ["0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]
    frozen = model[0].weight.detach().clone()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    run_snapshots(model, averager, 3)
    with torch.no_grad():
        model[0].weight.copy_(frozen)
    averager.copy_to(model)
    assert torch.equal(model[0].weight, frozen)
    for name, value in model.named_buffers():
        assert torch.equal(value, buffers[name]), name
    assert model[1].num_batches_tracked.dtype == torch.long


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_average_in_fp32(dtype):
    model = tiny_bert().to(dtype)
    averager = WeightAverager(model)
    assert len(averager.weights.staging) == len(averager.names)  # half-precision weights go through fp32 staging
    _, mean = run_snapshots(model, averager, 5)
    assert all(a.dtype == torch.float32 for a in averager.averages().values())
    # The fp32 mean keeps precision a 16-bit tensor cannot hold.
    assert max_relative_error(averager.averages(), mean) <= 1e-6
    assert any(not torch.equal(a, a.to(dtype).float()) for a in averager.averages().values())
    averager.copy_to(model)
    weights = dict(model.named_parameters())
    for name, average in averager.averages().items():
        assert weights[name].dtype == dtype and torch.equal(weights[name], average.to(dtype)), name


def bias_corrected_ema(snapshots, decay):
    """sum_i d^(n-i) w_i / sum_i d^(n-i), in float64: the closed form of the bias-corrected EMA."""
    n = len(snapshots) - 1
    coefficients = [decay ** (n - i) for i in range(n + 1)]
    return {k: sum(c * s[k] for c, s in zip(coefficients, snapshots)) / sum(coefficients) for k in snapshots[0]}


def test_ema_strategy_is_the_bias_corrected_ema():
    model = nn.Linear(3, 2)
    averager = WeightAverager(model, strategy="ema", ema_decay=0.9)
    snapshots, _ = run_snapshots(model, averager, 5)
    assert max_relative_error(averager.averages(), bias_corrected_ema(snapshots, 0.9)) <= 1e-6
    # Not stuck near the first snapshot: with d = 0.999 and 50 snapshots the result is nearly the uniform mean.
    averager = WeightAverager(model, strategy="ema", ema_decay=0.999)
    snapshots, mean = run_snapshots(model, averager, 50)
    assert max_relative_error(averager.averages(), bias_corrected_ema(snapshots, 0.999)) <= 1e-6
    assert max_relative_error(averager.averages(), mean) <= 0.05


def test_swap_restores_live_weights_bit_exactly_even_on_error():
    model = tiny_bert()
    averager = WeightAverager(model)
    run_snapshots(model, averager, 3)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with averager.averaged_weights(model):
        assert (
            max_relative_error(trainable_float_weights(model), {k: v.double() for k, v in averager.averages().items()})
            == 0.0
        )
    assert all(torch.equal(v, live[k]) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="boom"):
        with averager.averaged_weights(model):
            raise RuntimeError("boom")
    assert all(torch.equal(v, live[k]) for k, v in model.state_dict().items())
    assert not averager.holds_averages


def test_live_weights_context_inside_swapped_state():
    model = nn.Linear(3, 2)
    averager = WeightAverager(model)
    run_snapshots(model, averager, 2)
    live = model.weight.detach().clone()
    averager.swap_in(model)
    averaged = model.weight.detach().clone()
    assert not torch.equal(live, averaged)
    with averager.live_weights(model):
        assert torch.equal(model.weight, live)
    assert torch.equal(model.weight, averaged)
    averager.swap_out(model)
    assert torch.equal(model.weight, live)


def test_state_dict_roundtrip_and_mismatch():
    model = tiny_bert()
    averager = WeightAverager(model)
    run_snapshots(model, averager, 2)
    restored = WeightAverager(tiny_bert(seed=5))
    restored.load_state_dict(averager.state_dict())
    assert restored.n_averaged == 2
    assert all(torch.equal(restored.averages()[k], v) for k, v in averager.averages().items())
    with pytest.raises(ValueError, match="Parameters differ"):
        WeightAverager(tiny_gpt2_lm()).load_state_dict(averager.state_dict())
    with pytest.raises(ValueError, match="shape"):
        WeightAverager(tiny_bert(num_labels=3)).load_state_dict(averager.state_dict())
    with pytest.raises(ValueError, match="strategy"):
        WeightAverager(tiny_bert(), strategy="ema").load_state_dict(averager.state_dict())


def test_update_refuses_another_model():
    averager = WeightAverager(tiny_bert())
    with pytest.raises(ValueError, match="Parameters differ"):
        averager.update(tiny_gpt2_lm())


def test_non_finite_snapshot_is_skipped_and_counted(caplog):
    model = nn.Linear(3, 2)
    averager = WeightAverager(model)
    _, mean = run_snapshots(model, averager, 3)
    good = model.weight.detach().clone()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    assert averager.update(model) is False
    with torch.no_grad():
        model.weight.copy_(good)
        model.bias[0] = float("inf")
    assert averager.update(model) is False
    assert averager.n_skipped == 2 and averager.n_averaged == 3
    assert "skipped a snapshot" in caplog.text
    assert max_relative_error(averager.averages(), mean) <= 1e-6


def test_large_finite_weights_are_not_mistaken_for_non_finite():
    model = nn.Linear(4, 4)
    with torch.no_grad():
        model.weight.fill_(3e38)  # the fp32 sum of these 16 values is inf, every value is finite
    assert torch.isinf(model.weight.sum(dtype=torch.float32))  # so the one-read check falls back ...
    averager = WeightAverager(model)
    assert averager.update(model) is True  # ... to the element-wise check, which keeps the snapshot
    assert averager.n_skipped == 0 and torch.equal(averager.averages()["weight"], model.weight.detach())


def test_no_trainable_parameters_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable floating-point parameters"):
        WeightAverager(model)


def test_copy_before_any_snapshot_is_an_error():
    model = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="No snapshot"):
        WeightAverager(model).copy_to(model)


def allocated_bytes_during_update(averager, model):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        averager.update(model)
    return sum(max(e.cpu_memory_usage, 0) for e in prof.events())


def test_update_allocates_nothing_model_sized():
    model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(4)])  # 1 MiB of fp32 weights a layer
    model_bytes = sum(p.numel() * 4 for p in model.parameters())
    averager = WeightAverager(model)
    averager.update(model)
    # The finiteness check allocates one scalar norm a tensor, nothing proportional to the weights.
    assert allocated_bytes_during_update(averager, model) < 0.001 * model_bytes
    unchecked = WeightAverager(model, skip_non_finite=False)
    unchecked.update(model)
    assert allocated_bytes_during_update(unchecked, model) == 0


def test_updates_after_the_first_do_not_walk_the_module_tree(monkeypatch):
    model = tiny_bert()
    averager = WeightAverager(model)
    walks, counting = [], []
    original = nn.Module.named_parameters

    def named_parameters(self, *args, **kwargs):
        walks.extend(counting)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "named_parameters", named_parameters)
    snapshots = []
    for seed in range(3):
        perturb(model, seed)
        counting[:] = [seed]
        assert averager.update(model)
        counting.clear()
        snapshots.append(trainable_float_weights(model))
    assert walks == [0]  # the first update matches the parameters by name; the others reuse them
    mean = {k: torch.stack([s[k] for s in snapshots]).mean(0) for k in snapshots[0]}
    assert max_relative_error(averager.averages(), mean) <= 1e-6


def test_a_parameter_frozen_or_reshaped_between_updates_is_refused():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    averager = WeightAverager(model)
    averager.update(model)
    model[1].bias.requires_grad_(False)
    with pytest.raises(ValueError, match="Parameters differ"):
        averager.update(model)
    model[1].bias.requires_grad_(True)
    averager.update(model)
    model[0].weight.data = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="has shape"):
        averager.update(model)


def test_one_step_reads_and_checks_the_weights_once_for_every_average(monkeypatch):
    from hf_swa.averaging import sources

    settings = dict(window_starts=[1, 3], ema_decays=[0.9], power_ema_stds=[0.1], bema=True)
    model = nn.Linear(4, 3)
    together, apart = WeightAverager(model, **settings), WeightAverager(model, **settings)
    checks = []
    original = sources.all_finite
    monkeypatch.setattr(sources, "all_finite", lambda tensors: checks.append(1) or original(tensors))
    together.update_step(model, 0, snapshot=False)  # BEMA's anchor: the weights before training
    apart.update_bema(model, 0)
    for step in range(1, 6):
        perturb(model, step)
        checks.clear()
        together.update_step(model, step, snapshot=step % 2 == 1)
        assert len(checks) == 1, step
        if step % 2 == 1:
            apart.update(model, step=step)
        apart.update_power_emas(model, step)
        apart.update_bema(model, step)
    assert together.candidate_names() == apart.candidate_names() == ["swa", "swa_from3", "ema_0.9", "pema_0.1"]
    for name in together.candidate_names():
        for key, value in apart.averages(name).items():
            assert torch.equal(together.averages(name)[key], value), (name, key)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    assert together.update_step(model, 7, snapshot=True) is False and together.n_skipped == 1
