"""Averaging runs that are already saved: a streamed fp32 mean, greedy soups, and ``hf-swa-average``.

- :mod:`.average`: `average_checkpoints`, the mean of saved checkpoints, tensor by tensor (core);
- :mod:`.soup`: `greedy_soup`, inputs joined while a held-out score does not drop (core);
- :mod:`.power_ema_reconstruction`: `reconstruct_power_ema`, a power EMA of any width from a run's snapshots (core);
- :mod:`.cli`: the ``hf-swa-average`` command line (an application);
- :mod:`.scoring`: the GLUE score a soup is chosen by, from the command line (an application);
- :mod:`.card`: the averaging section of the model card (an application).

The core parts depend on torch, transformers and safetensors only; the command line adds
the GLUE scoring and the Hub push, imported only when a run asks for them.

Example:
    >>> from hf_swa import average_checkpoints, greedy_soup   # the same functions
    >>> from hf_swa.posthoc.average import average_checkpoints as same
    >>> same is average_checkpoints
    True
"""
