"""The demo's settings (each a ``--flag`` of ``hf-swa-demo``): light to import, so ``--help`` starts at once."""

from __future__ import annotations

import dataclasses

from hf_swa.training import defaults

__all__ = ["DemoArguments", "SELECT_SHARE"]

# The SWA run takes the core's defaults (hf_swa.training.defaults: the candidates, the LR tail, what ships) and
# holds out this share of the training tweets to choose on, as run_glue does by default (0: none, every tweet trains):
SELECT_SHARE = defaults.SWA_SELECT_SPLIT


@dataclasses.dataclass
class DemoArguments:
    """The demo's flags: how much data, which seeds, the training budget.

    >>> DemoArguments(seeds=[1, 2]).seeds, DemoArguments().n_validation
    ([1, 2], 800)
    """

    output_root: str = dataclasses.field(default="outputs", metadata={"help": "Where everything is written."})
    n_train: int = dataclasses.field(
        default=2400,
        metadata={"help": "Training tweets (a random sample)."},
    )
    n_validation: int = dataclasses.field(default=800, metadata={"help": "Held-out tweets for evaluation."})
    seeds: list[int] = dataclasses.field(
        default_factory=lambda: [42], metadata={"help": "Seeds (baseline + SWA each)."}
    )
    num_train_epochs: float = dataclasses.field(default=2.0, metadata={"help": "Epochs over the training sample."})
    learning_rate: float = dataclasses.field(default=8e-5, metadata={"help": "Peak LR (SWA holds half of it)."})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "Training batch size."})
    max_seq_length: int = dataclasses.field(
        default=64, metadata={"help": "Tweets are short: 95 in 100 fit in 44 tokens."}
    )
    evaluations: int = dataclasses.field(default=4, metadata={"help": "Evaluations during training (for the plot)."})
