"""The engine: fp32 running averages of a model's trainable weights.

It knows tensors and modules only, nothing of ``Trainer``, GLUE or the Hub.

- :mod:`.averager`: `WeightAverager`, one multi-tensor update a step, candidates, state;
- :mod:`.sources`: the update's read side: the model's weights matched, NaN/inf-checked, as fp32;
- :mod:`.swapping`: which weights the model holds: a candidate swapped in, the live weights kept aside;
- :mod:`.candidates`: the averages it can hold (window means, EMAs, power EMAs) behind one interface;
- :mod:`.bema`: BEMA (bias-corrected EMA, TRL's `BEMACallback`) behind the same interface;
- :mod:`.power_ema`: power-function EMAs (EDM2): width and exponent, per-step decay, the post-hoc solve;
- :mod:`.state`: a saved averager state checked against the averager that resumes it;
- :mod:`.strategies`: how much weight the next snapshot gets (uniform or EMA);
- :mod:`.parameters`: which parameters are averaged, and under which names;
- :mod:`.distributed`: FSDP2 shards and ZeRO-3 partitions, averaged where they live.

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

from .averager import WeightAverager
from .parameters import averaged_parameters, clean_parameter_name

__all__ = ["WeightAverager", "averaged_parameters", "clean_parameter_name"]
