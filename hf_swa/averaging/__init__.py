"""The engine: fp32 running averages of a model's trainable weights.

It knows tensors and modules only, nothing of ``Trainer``, GLUE or the Hub.

- :mod:`.averager`: `WeightAverager`, one multi-tensor update a step, candidates, state;
- :mod:`.sources`: the update's read side: the model's weights matched, NaN/inf-checked, as fp32;
- :mod:`.swapping`: which weights the model holds: a candidate swapped in, the live weights kept aside;
- :mod:`.candidates`: the averages it can hold (window means, EMAs, power EMAs) behind one interface;
- :mod:`.bema`: BEMA (bias-corrected EMA, TRL's `BEMACallback`) behind the same interface;
- :mod:`.power_ema_math`: power-function EMAs (EDM2): width and exponent, per-step decay, the post-hoc solve;
- :mod:`.state`: a saved averager state checked against the averager that resumes it;
- :mod:`.strategies`: how much weight the next snapshot gets (uniform or EMA);
- :mod:`.parameters`: which parameters are averaged, and under which names;
- :mod:`.distributed`: FSDP2 shards and ZeRO-3 partitions, averaged where they live;
- :mod:`.names`: the names the weights go by (``swa``, ``live``), torch-free for the records' readers.

Example:
    >>> import torch
    >>> from hf_swa.averaging import WeightAverager
    >>> model = torch.nn.Linear(2, 1)
    >>> averager = WeightAverager(model, window_starts=[1, 3])
    >>> for step in range(1, 5):
    ...     with torch.no_grad():
    ...         _ = model.weight.fill_(float(step))
    ...     _ = averager.update(model, step=step)
    >>> averager.candidate_names()
    ['swa', 'swa_from3']
    >>> with averager.averaged_weights(model, "swa_from3"):
    ...     model.weight.tolist()          # mean of steps 3 and 4
    [[3.5, 3.5]]
    >>> model.weight.tolist()              # the live weights are back
    [[4.0, 4.0]]
"""

from __future__ import annotations

import importlib

# Loaded on first use, so that the torch-free :mod:`.names` imports without torch (the Hub's command line).
_EXPORTS = {
    "WeightAverager": ".averager",
    "averaged_parameters": ".parameters",
    "clean_parameter_name": ".parameters",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
