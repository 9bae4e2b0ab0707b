"""Power-function EMAs (EDM2): γ from the width, the running EMAs, snapshots, and post-hoc reconstruction."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from posthoc_fixtures import folder_snapshot, stored_tensors
from safetensors.torch import load_file, save_file
from tiny_models import tiny_bert
from transformers import AutoModelForSequenceClassification

import hf_swa
from hf_swa import WeightAverager
from hf_swa.averaging.parameters import averaged_parameters
from hf_swa.averaging.power_ema_math import check_std, solve_coefficients, std_to_exp
from hf_swa.checkpointing.names import CONFIG_FILE, POWER_EMA_DIR
from hf_swa.checkpointing.power_ema_snapshots import (
    list_power_ema_snapshots,
    save_power_ema_snapshots,
    write_power_ema_snapshot,
)
from hf_swa.posthoc.cli import main
from hf_swa.posthoc.power_ema_reconstruction import (
    power_ema_coefficients,
    reconstruct_power_ema,
    write_power_ema_models,
)

STDS = (0.05, 0.10)
STEPS, EVERY = 200, 10
FROZEN = "bert.embeddings.position_embeddings.weight"


def gamma_of(std: float) -> float:
    """γ of width σ_rel, found here by bisection on EDM2's definition σ_rel² = (γ+1) / ((γ+2)² (γ+3)).

    σ_rel falls as γ grows from 0 (σ_rel = sqrt(1/12), the uniform mean) to infinity, so one γ >= 0 has the width.
    Independent of the code's cubic solve (np.roots).
    """

    def width(gamma: float) -> float:
        return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))

    low, high = 0.0, 1e7
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if width(middle) > std else (low, middle)
    return (low + high) / 2


def profile_on_grid(step: float, gamma: float, grid: np.ndarray) -> np.ndarray:
    """EDM2's power profile p(s) = (γ+1) s^γ / t^(γ+1) on (0, t], 0 after, at the points of `grid`."""
    return np.where(grid <= step, (gamma + 1) * (grid / step) ** gamma / step, 0.0)


def coefficients_by_quadrature(in_steps, in_stds, out_step, out_std, points: int = 400_000) -> np.ndarray:
    """EDM2's post-hoc fit written anew: the least-squares combination of the stored profiles closest to the target's
    in L2 over (0, out_step], the integrals by the midpoint rule, normalised to sum to 1."""
    width = out_step / points
    grid = (np.arange(points) + 0.5) * width
    stored = np.stack([profile_on_grid(s, gamma_of(w), grid) for s, w in zip(in_steps, in_stds)])
    target = profile_on_grid(out_step, gamma_of(out_std), grid)
    x, *_ = np.linalg.lstsq(stored.T * math.sqrt(width), target * math.sqrt(width), rcond=None)
    return x / x.sum()


def profile(gamma: float, update_steps, end: int, length: int) -> np.ndarray:
    """The weight each step 1..length carries in a power EMA updated at ``update_steps`` and read at ``end``."""
    weights, previous = np.zeros(length), 0
    for t in (s for s in update_steps if s <= end):
        weights[t - 1] = (t ** (gamma + 1) - previous ** (gamma + 1)) / end ** (gamma + 1)
        previous = t
    return weights


def run(model, averager, history, first: int, last: int, snapshot_dir=None, seed: int = 0):
    """Steps ``first..last`` of a random walk with drift, each folded into the power EMAs (snapshots every EVERY)."""
    named = averaged_parameters(model)
    for step in range(first, last + 1):
        generator = torch.Generator().manual_seed(seed * 100_003 + step)
        with torch.no_grad():
            for index, (_, param) in enumerate(named):
                drift = 0.01 * math.cos(index + 1.0)
                param.add_(drift + 0.02 * torch.randn(param.shape, generator=generator))
        assert averager.update_power_emas(model, step)
        history.append({name: param.detach().to(torch.float64, copy=True) for name, param in named})
        if snapshot_dir is not None and step % EVERY == 0:
            save_power_ema_snapshots(averager, snapshot_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BERT over 200 steps with power EMAs of widths 0.05 and 0.10, snapshots every 10 steps, saved as a run."""
    root = tmp_path_factory.mktemp("run")
    model = tiny_bert(seed=0)
    model.get_parameter(FROZEN).requires_grad_(False)
    averager = WeightAverager(model, power_ema_stds=STDS)
    history = []
    run(model, averager, history, 1, STEPS, root / POWER_EMA_DIR)
    model.save_pretrained(root / f"checkpoint-{STEPS}")
    return dict(root=root, snapshots=root / POWER_EMA_DIR, averager=averager, history=history, model=model)


def direct_ema(history, gamma: float) -> dict:
    """A power EMA run directly on the weights, in float64, with EDM2's β = (1 − 1/t)^(γ+1)."""
    ema = None
    for t, weights in enumerate(history, start=1):
        beta = (1.0 - 1.0 / t) ** (gamma + 1.0)
        ema = dict(weights) if ema is None else {n: beta * ema[n] + (1.0 - beta) * w for n, w in weights.items()}
    return ema


def max_abs_diff(a: dict, b: dict) -> float:
    return max(float((a[n].to(torch.float64) - b[n].to(torch.float64)).abs().max()) for n in a)


# -- the math -------------------------------------------------------------------------------------


def test_gamma_is_the_largest_real_root_of_edm2_cubic():
    # EDM2 stores σ_rel = 0.05 and 0.10, i.e. γ = 16.97 and 6.94 (Karras et al. 2024, Section 3.2 / Appendix C.2).
    assert round(float(std_to_exp(0.05)), 2) == 16.97 and round(float(std_to_exp(0.10)), 2) == 6.94
    for std in (0.01, 0.02, 0.05, 0.07, 0.10, 0.15, 0.25, 0.288):
        gamma = float(std_to_exp(std))
        assert gamma == pytest.approx(gamma_of(std), rel=1e-12)
        assert math.sqrt((gamma + 1) / (gamma + 2) ** 2 / (gamma + 3)) == pytest.approx(std, rel=1e-12)


def test_engine_ema_is_the_power_profile_also_with_gaps():
    model = torch.nn.Linear(3, 1)
    averager = WeightAverager(model, power_ema_stds=[0.05, 0.2])
    updates, values = [1, 2, 5, 6, 9, 13], {}
    for step in range(1, 14):
        with torch.no_grad():
            model.bias.fill_(math.sin(step))
        values[step] = math.sin(step)
        if step in updates:  # Δt = 1, 3, 1, 3, 4: t counts optimizer steps, not updates
            averager.update_power_emas(model, step)
    for std in (0.05, 0.2):
        weights = profile(gamma_of(std), updates, 13, 13)
        expected = sum(w * values[k] for k, w in enumerate(weights, start=1))
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert averager.averages(f"pema_{std:g}")["bias"].item() == pytest.approx(expected, abs=1e-6)
    record = {r["name"]: r for r in averager.candidates()}["pema_0.2"]
    assert (record["step"], record["n_averaged"], record["kind"]) == (13, 6, "power_ema")
    with pytest.raises(ValueError, match="increasing: got step=13 after step 13"):
        averager.update_power_emas(model, 13)
    with pytest.raises(RuntimeError, match="power_ema_stds"):
        WeightAverager(model).update_power_emas(model, 1)


def test_profile_inner_products_equal_their_integrals():
    from hf_swa.averaging.power_ema_math import power_function_correlation

    points = 400_000
    for (t_a, std_a), (t_b, std_b) in [((10, 0.05), (20, 0.10)), ((20, 0.10), (10, 0.05)), ((15, 0.2), (15, 0.07))]:
        end = max(t_a, t_b)
        grid = (np.arange(points) + 0.5) * end / points
        product = profile_on_grid(t_a, gamma_of(std_a), grid) * profile_on_grid(t_b, gamma_of(std_b), grid)
        integral = float(product.sum() * end / points)
        closed = float(power_function_correlation(t_a, float(std_to_exp(std_a)), t_b, float(std_to_exp(std_b))))
        assert closed == pytest.approx(integral, rel=1e-5), (t_a, std_a, t_b, std_b)


@pytest.mark.parametrize(
    "in_steps,in_stds,out_step,out_std",
    [
        ([10, 20, 10, 20], [0.05, 0.05, 0.10, 0.10], 20, 0.07),
        ([10, 20, 10, 20], [0.05, 0.05, 0.10, 0.10], 20, 0.15),
        ([8, 16, 24, 8, 16, 24], [0.05, 0.05, 0.05, 0.2, 0.2, 0.2], 24, 0.1),
    ],
)
def test_coefficients_equal_a_least_squares_fit_of_the_profiles_by_quadrature(in_steps, in_stds, out_step, out_std):
    ours = solve_coefficients(in_steps, in_stds, out_step, [out_std])[:, 0]
    reference = coefficients_by_quadrature(in_steps, in_stds, out_step, out_std)
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-4)
    assert np.abs(ours).max() > 0.05  # a fit that uses the snapshots, not a trivial one


def test_coefficients_sum_to_one_for_each_target():
    steps = [s for s in range(10, 201, 10) for _ in STDS]
    stds = [w for _ in range(10, 201, 10) for w in STDS]
    for end in (50, 200):
        used = [(s, w) for s, w in zip(steps, stds) if s <= end]
        coefficients = solve_coefficients([s for s, _ in used], [w for _, w in used], end, [0.02, 0.07, 0.2])
        assert coefficients.shape == (len(used), 3)
        np.testing.assert_allclose(coefficients.sum(axis=0), 1.0, atol=1e-12)


# -- reconstruction ---------------------------------------------------------------------------------


def test_a_stored_width_reproduces_the_stored_ema(trained):
    for std in STDS:
        result = reconstruct_power_ema(trained["snapshots"], std)
        assert result.step == STEPS and sum(result.coefficients) == pytest.approx(1.0, abs=1e-12)
        stored = trained["averager"].averages(f"pema_{std:g}")
        assert max_abs_diff(result.state_dict(), stored) <= 1e-6
        # At an earlier snapshot too: only the snapshots up to it are used.
        earlier = reconstruct_power_ema(trained["snapshots"], std, step=100)
        assert max(s.step for s in earlier.sources) == 100 and len(earlier.sources) == 20
        assert (
            max_abs_diff(earlier.state_dict(), load_file(trained["snapshots"] / f"pema-{std:g}-000000100.safetensors"))
            <= 1e-6
        )


def test_tensors_streamed_in_pieces_of_rows_equal_whole_ones(trained, monkeypatch):
    from hf_swa.checkpointing.files import row_chunks
    from hf_swa.posthoc import power_ema_reconstruction

    whole = reconstruct_power_ema(trained["snapshots"], 0.07).state_dict()
    monkeypatch.setattr(power_ema_reconstruction, "row_chunks", lambda shape, dtype: row_chunks(shape, dtype, 256))
    result = reconstruct_power_ema(trained["snapshots"], 0.07)
    assert len(list(result.chunks("bert.embeddings.word_embeddings.weight"))) == 16  # 64 rows of 16 fp32 in 256 B
    assert all(torch.equal(t, whole[n]) for n, t in result.tensors())


def test_an_intermediate_width_matches_a_power_ema_run_directly(trained):
    std, history = 0.07, trained["history"]
    result = reconstruct_power_ema(trained["snapshots"], std)
    direct = direct_ema(history, gamma_of(std))
    # The reconstruction weighs step k's weights by Σ_i x_i profile_i(k); the target by profile(k). Both sum to 1,
    # so |reconstruction − direct| <= ||Δprofile||_1 · max_k |w_k − midrange| per element (+ fp32 rounding).
    fitted = sum(
        x * profile(gamma_of(s.std), range(1, s.step + 1), s.step, STEPS)
        for x, s in zip(result.coefficients, result.sources)
    )
    residual = float(np.abs(fitted - profile(gamma_of(std), range(1, STEPS + 1), STEPS, STEPS)).sum())
    stacked = {n: torch.stack([h[n] for h in history]) for n in direct}
    spread = max(float((w.amax(0) - w.amin(0)).max()) / 2 for w in stacked.values())
    tolerance = residual * spread + 1e-5
    error = max_abs_diff(result.state_dict(), direct)
    stored = [trained["averager"].averages(f"pema_{w:g}") for w in STDS]
    assert error <= tolerance < max_abs_diff(*stored)
    # The continuous fit error, recorded in swa_config.json: nil for a stored width, larger when extrapolating.
    fits = {w: reconstruct_power_ema(trained["snapshots"], w).fit_error() for w in (0.05, 0.07, 0.25)}
    assert fits[0.05] < 1e-6 < fits[0.07] < fits[0.25] and fits[0.07] < 0.05
    assert all(error < max_abs_diff(s, direct) / 10 for s in stored)


# -- refusals ---------------------------------------------------------------------------------------


def refused(tmp_path, snapshots, base, match, **kwargs):
    before = folder_snapshot(snapshots)
    kwargs.setdefault("stds", [0.07])
    with pytest.raises(ValueError, match=match):
        write_power_ema_models(snapshots, output_dir=tmp_path / "out", base_model_dir=base, progress=False, **kwargs)
    assert not (tmp_path / "out").exists() and folder_snapshot(snapshots) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.parametrize("std", [0.0, -0.05, 0.289, 0.5, float("nan")])
def test_a_width_outside_edm2_range_is_refused(tmp_path, trained, std):
    base = trained["root"] / f"checkpoint-{STEPS}"
    refused(tmp_path, trained["snapshots"], base, r"--power_ema_std=.*0 < σ_rel < 0.289", stds=[0.05, std])
    with pytest.raises(ValueError, match="0 < σ_rel < 0.289"):
        WeightAverager(torch.nn.Linear(1, 1), power_ema_stds=[std])


def test_a_step_after_the_last_snapshot_or_between_snapshots_is_refused(tmp_path, trained):
    base = trained["root"] / f"checkpoint-{STEPS}"
    refused(
        tmp_path, trained["snapshots"], base, r"--power_ema_step 210 is after the last snapshot \(step 200\)", step=210
    )
    refused(
        tmp_path, trained["snapshots"], base, r"--power_ema_step 105 has no snapshot.*nearest, 100 or 110", step=105
    )


def test_fewer_than_two_stored_widths_are_refused(tmp_path, trained):
    one_width = tmp_path / "one"
    one_width.mkdir()
    for snapshot in list_power_ema_snapshots(trained["snapshots"], std=0.05):
        shutil.copy(snapshot.path, one_width)
    refused(tmp_path, one_width, trained["root"] / f"checkpoint-{STEPS}", r"1 width\(s\).*at least 2 stored widths")


@pytest.mark.parametrize("stds", [[0.07], [0.03, 0.07]])
def test_nan_in_a_snapshot_is_refused(tmp_path, trained, stds):
    broken = tmp_path / "broken"
    shutil.copytree(trained["snapshots"], broken)
    tensors = load_file(broken / "pema-0.1-000000150.safetensors")
    tensors["bert.pooler.dense.bias"][3] = float("nan")
    write_power_ema_snapshot(broken, 0.1, float(std_to_exp(0.1)), 150, tensors)
    refused(
        tmp_path, broken, trained["root"] / f"checkpoint-{STEPS}", r"pema-0.1-000000150.*NaN/inf.*before", stds=stds
    )


# -- the engine's state and the snapshots -------------------------------------------------------------


def test_resume_mid_run_equals_uninterrupted(tmp_path, trained):
    model = tiny_bert(seed=0)
    model.get_parameter(FROZEN).requires_grad_(False)
    averager, history = WeightAverager(model, power_ema_stds=STDS), []
    run(model, averager, history, 1, 117)
    state = averager.state_dict()  # through the checkpoint's files: safetensors for tensors, JSON for the rest
    save_file({k: v.contiguous() for k, v in state["averages"].items()}, tmp_path / "averages.safetensors")
    (tmp_path / "state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "averages"}))
    model.save_pretrained(tmp_path / "model")
    resumed_model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    resumed_model.get_parameter(FROZEN).requires_grad_(False)
    resumed = WeightAverager(resumed_model, power_ema_stds=STDS)
    resumed.load_state_dict(
        json.loads((tmp_path / "state.json").read_text()) | {"averages": load_file(tmp_path / "averages.safetensors")}
    )
    run(resumed_model, resumed, history, 118, STEPS)
    for std in STDS:
        name = f"pema_{std:g}"
        uninterrupted, after = trained["averager"].averages(name), resumed.averages(name)
        assert all(torch.equal(uninterrupted[n], after[n]) for n in uninterrupted)
    with pytest.raises(ValueError, match="power-EMA widths"):
        WeightAverager(resumed_model, power_ema_stds=[0.05]).load_state_dict(state)


def test_snapshots_hold_the_parameters_with_their_profile(tmp_path, trained):
    snapshots = list_power_ema_snapshots(trained["snapshots"])
    assert len(snapshots) == 2 * STEPS // EVERY and [s.step for s in snapshots[:2]] == [EVERY, EVERY]
    names = [name for name, _ in averaged_parameters(trained["model"])]
    assert sorted(snapshots[-1].names) == sorted(names) and FROZEN not in names
    assert [(s.std, s.gamma) for s in snapshots[-2:]] == [(w, float(std_to_exp(w))) for w in STDS]
    # bfloat16 on request; leftovers of an interrupted write are not snapshots.
    gamma = float(std_to_exp(0.05))
    write_power_ema_snapshot(tmp_path, 0.05, gamma, 7, trained["averager"].averages("pema_0.05"), dtype="bfloat16")
    (tmp_path / ".tmp-xyz-pema-0.05-000000008.safetensors").write_bytes(b"partial")
    (only,) = list_power_ema_snapshots(tmp_path)
    assert only.dtype == "bfloat16" and load_file(only.path)[names[0]].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float32 .* or bfloat16"):
        write_power_ema_snapshot(tmp_path, 0.05, gamma, 8, {}, dtype="float16")


# -- the command line ---------------------------------------------------------------------------------


def test_cli_writes_models_that_load_and_equal_the_reconstruction(tmp_path, trained, capsys):
    out = tmp_path / "out"
    assert main(["--run_dir", str(trained["root"]), "--power_ema_std", "0.05", "0.07", "--output_dir", str(out)]) == 0
    assert "Wrote 2 power-EMA model(s)" in capsys.readouterr().out
    base = stored_tensors(trained["root"] / f"checkpoint-{STEPS}")
    for std in (0.05, 0.07):
        folder = out / f"pema_{std:g}"
        expected = reconstruct_power_ema(trained["snapshots"], std)
        loaded = AutoModelForSequenceClassification.from_pretrained(folder).state_dict()
        assert all(torch.equal(loaded[n], t) for n, t in expected.state_dict().items())
        assert torch.equal(loaded[FROZEN], base[FROZEN])  # not averaged: the base model's
        record = json.loads((folder / CONFIG_FILE).read_text())
        assert record["weights"] == pytest.approx(expected.coefficients, abs=0) and record["step"] == STEPS
        assert record["std"] == std and f"σ_rel = {std:g}" in (folder / "README.md").read_text()
    assert power_ema_coefficients(expected.sources, STEPS, [0.07])[0] == pytest.approx(expected.coefficients)
    assert hf_swa.reconstruct_power_ema is reconstruct_power_ema  # the public name
    assert main(["--run_dir", str(trained["root"]), "--power_ema_std", "0.3", "--output_dir", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="0 < σ_rel"):
        check_std(0.3, "--power_ema_std")
