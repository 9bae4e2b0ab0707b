"""Power-function EMAs: the width, the exponent, the per-step decay and the post-hoc solve.

After Karras et al., "Analyzing and Improving the Training Dynamics of Diffusion Models"
(EDM2, CVPR 2024), Appendix C (equations 121-127 and 151, algorithms 2 and 3), and the
reference implementation ``training/phema.py`` of NVlabs/edm2; written anew for hf_swa.

**Time.** ``t`` counts optimizer steps. Training starts at ``t = 0`` with the initial
weights, and the weights after optimizer step ``k`` are the sample of the interval
``(k - 1, k]``. A power EMA at time ``t`` averages the weights over ``(0, t]`` with the
density ``p_t(s) = (γ + 1) s^γ / t^(γ + 1)``: a fixed fraction of the run, whatever its
length. Its relative width ``σ_rel`` is the standard deviation of that density divided
by ``t``, ``σ_rel² = (γ + 1) / ((γ + 2)² (γ + 3))``; a small σ_rel is a short average
near the live weights, ``σ_rel = sqrt(1/12) ≈ 0.2887`` (γ = 0) the uniform mean of the
whole run.

**Update.** At the end of step ``t``, ``Δt`` steps after the previous update (``Δt = t``
for the first one), the EMA becomes ``β·ema + (1 − β)·w_t`` with
``β = (1 − Δt/t)^(γ + 1)``. The first update has β = 0 (a copy), so nothing depends on
how the EMA was initialised, and after the updates at ``t_1 < ... < t_n`` each update's
weights ``w_{t_i}`` hold exactly the mass ``(t_i^(γ+1) − t_{i-1}^(γ+1)) / t^(γ+1)`` that
``p_t`` puts on ``(t_{i-1}, t_i]``: the discrete EMA *is* the power profile, step by step.
EDM2 counts t in training images, updated after each batch; counting optimizer steps is
the same clock with a batch as the unit (and gradient accumulation counts once).

**Reconstruction.** Snapshots of EMAs of a few widths, taken at several steps, span many
profiles. An EMA of another width σ at step T is approximated by the combination
``Σ x_i snapshot_i`` whose profile is closest to ``p_T`` in L2: the Gram matrix
``A_ij = <p_i, p_j>`` and ``b_i = <p_i, p_T>`` have a closed form (EDM2 eq. 151), the
solve ``A x = b`` gives the coefficients, and they are normalised to sum to 1.

Example:
    >>> round(float(std_to_exp(0.05)), 3), round(float(std_to_exp(0.10)), 3)
    (16.972, 6.937)
    >>> round(float(exp_to_std(std_to_exp(0.07))), 6)
    0.07
    >>> power_function_beta(gamma=2.0, step=1, delta=1)  # the first update copies the weights
    0.0
    >>> x = solve_coefficients([10, 20, 10, 20], [0.05, 0.05, 0.10, 0.10], 20, [0.10])
    >>> [round(float(v), 6) + 0.0 for v in x[:, 0]]  # a stored profile is reproduced by itself
    [0.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

#: The widest σ_rel EDM2 accepts (``0 < σ_rel < 0.289``); ``sqrt(1/12) ≈ 0.2887`` is the uniform mean (γ = 0).
MAX_STD = 0.289


def check_std(std: float, setting: str = "power EMA std") -> float:
    """The one check of a power-EMA width σ_rel: a number with ``0 < σ_rel < 0.289`` (EDM2's range).

    >>> check_std(0.05)
    0.05
    """
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0.0 < std < MAX_STD or math.isnan(std):
        raise ValueError(
            f"{setting}={std!r}: a power-EMA width σ_rel must be a number with 0 < σ_rel < {MAX_STD} (EDM2's range; "
            "0.05 and 0.10 are EDM2's stored widths, sqrt(1/12) = 0.2887 is the uniform mean of the whole run)."
        )
    return float(std)


def check_stds(stds: Sequence[float], setting: str = "power_ema_stds") -> List[float]:
    """Each width checked by `check_std`, none twice.

    >>> check_stds([0.05, 0.1])
    [0.05, 0.1]
    """
    checked = [check_std(s, setting) for s in stds]
    if len(set(checked)) != len(checked):
        raise ValueError(f"{setting}={list(stds)!r}: each width may appear once")
    return checked


def std_to_exp(std):
    """The exponent γ of width σ_rel: the largest real root of ``γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²)``.

    The cubic is ``σ_rel² = (γ + 1) / ((γ + 2)² (γ + 3))`` cleared of fractions (EDM2
    eq. 126, algorithm 2). Accepts a number or an array (float64 out).
    """
    std = np.asarray(std, dtype=np.float64)
    roots = [np.roots([1.0, 7.0, 16.0 - v, 12.0 - v]) for v in std.reshape(-1) ** -2.0]
    return np.array([r[np.abs(r.imag) < 1e-9].real.max() for r in roots]).reshape(std.shape)


def exp_to_std(gamma):
    """The width σ_rel of exponent γ: ``sqrt((γ + 1) / ((γ + 2)² (γ + 3)))`` (EDM2 eq. 123)."""
    gamma = np.asarray(gamma, dtype=np.float64)
    return np.sqrt((gamma + 1.0) / (gamma + 2.0) ** 2 / (gamma + 3.0))


def power_function_beta(gamma: float, step: int, delta: int) -> float:
    """The decay of an update at step ``step``, ``delta`` steps after the previous one: ``(1 − Δt/t)^(γ + 1)``."""
    if not 0 < delta <= step:
        raise ValueError(f"A power-EMA update needs 0 < Δt <= t, got Δt={delta} at t={step}.")
    return float((1.0 - delta / step) ** (gamma + 1.0))


def power_function_correlation(a_step, a_gamma, b_step, b_gamma):
    """``<p_a, p_b>``: the inner product of two power profiles over time (EDM2 eq. 151), broadcast.

    With ``t_a <= t_b``: ``(γ_a + 1)(γ_b + 1) / (γ_a + γ_b + 1) · (t_a / t_b)^γ_b / t_b``, and symmetrically.
    """
    a_step, a_gamma, b_step, b_gamma = (np.asarray(v, dtype=np.float64) for v in (a_step, a_gamma, b_step, b_gamma))
    ratio = a_step / b_step
    power = np.where(a_step < b_step, b_gamma, -a_gamma)
    scale = (a_gamma + 1.0) * (b_gamma + 1.0) / (a_gamma + b_gamma + 1.0)
    return scale * ratio**power / np.maximum(a_step, b_step)


def solve_coefficients(in_steps, in_stds, out_step, out_stds) -> np.ndarray:
    """Coefficients ``[len(in), len(out)]`` that combine the stored snapshots into each target EMA.

    ``in_steps``/``in_stds``: the step and width of each snapshot (all ``> 0`` and at or
    before ``out_step``); ``out_stds``: the target widths at ``out_step``. Each column is
    the least-squares solve of the profiles (EDM2 algorithm 3), normalised to sum to 1.
    """
    in_steps = np.asarray(in_steps, dtype=np.float64).reshape(-1, 1)
    in_gammas = std_to_exp(np.asarray(in_stds, dtype=np.float64)).reshape(-1, 1)
    out_gammas = std_to_exp(np.asarray(out_stds, dtype=np.float64)).reshape(1, -1)
    if in_steps.min() <= 0 or in_steps.max() > out_step:
        raise ValueError(f"Snapshots must lie in (0, {out_step}]: got steps {sorted(set(in_steps.ravel()))}.")
    gram = power_function_correlation(in_steps, in_gammas, in_steps.T, in_gammas.T)
    rhs = power_function_correlation(in_steps, in_gammas, np.float64(out_step), out_gammas)
    coefficients = np.linalg.solve(gram, rhs)
    return coefficients / coefficients.sum(axis=0, keepdims=True)


def fit_error(in_steps, in_stds, out_step, out_std, coefficients) -> float:
    """How far ``Σ x_i p_i`` is from the target profile ``p_T``: ``‖Σ x_i p_i − p_T‖ / ‖p_T‖`` in L2 over time.

    0 when a stored profile is asked for; it grows as the target width leaves the stored ones.

    >>> steps, stds = [10, 20, 10, 20], [0.05, 0.05, 0.10, 0.10]
    >>> x = solve_coefficients(steps, stds, 20, [0.10])[:, 0]
    >>> fit_error(steps, stds, 20, 0.10, x) < 1e-6
    True
    """
    steps = np.asarray(in_steps, dtype=np.float64)
    gammas = std_to_exp(np.asarray(in_stds, dtype=np.float64))
    x = np.asarray(coefficients, dtype=np.float64)
    gamma = std_to_exp(out_std)
    gram = power_function_correlation(steps[:, None], gammas[:, None], steps[None, :], gammas[None, :])
    rhs = power_function_correlation(steps, gammas, np.float64(out_step), gamma)
    target = power_function_correlation(np.float64(out_step), gamma, np.float64(out_step), gamma)
    return float(np.sqrt(max(x @ gram @ x - 2.0 * x @ rhs + target, 0.0) / target))
