"""The names the weights go by in scores and records: the SWA average and the live weights.

One home for each, torch-free, so that what reads the records (the model card, the report) names
them without loading torch. The other candidates are named after their settings by
:mod:`hf_swa.averaging.candidates` (``swa_from{s}``, ``ema_{d}``, ``pema_{σ_rel}``).

Example:
    >>> from hf_swa.averaging.names import LIVE, MAIN_CANDIDATE
    >>> MAIN_CANDIDATE, LIVE
    ('swa', 'live')
"""

#: The SWA average of every snapshot from the start step.
MAIN_CANDIDATE = "swa"
#: The weights the optimizer trained (not averaged), scored and recorded beside the candidates.
LIVE = "live"

__all__ = ["MAIN_CANDIDATE", "LIVE"]
