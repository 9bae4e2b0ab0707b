"""Model cards and Hub pushes for averaged models.

A folder written by ``SWATrainer.save_model`` holds a plain Transformers checkpoint (the
averaged weights) plus ``swa_config.json`` (the averaging settings and ``n_averaged``).
This package turns that folder into a Hub repository:

- :func:`render_model_card` builds the card (YAML metadata with a ``model-index`` of the
  averaged model's results, SWA settings, live vs averaged results, how to load, limits);
- :func:`write_model_card` reads ``swa_config.json`` (and the results, :mod:`hf_swa.hub.results`) from the
  folder and writes ``README.md`` next to the weights;
- :func:`push_to_hub` checks the folder really is an averaged model, then creates the repo
  and uploads the folder with its card in one commit, writing nothing locally until the Hub has it
  (:mod:`hf_swa.hub.push`; a failed push raises :class:`HubPushError`); ``hf-swa-push`` is its command line.

Example:
    >>> from hf_swa.hub import render_model_card
    >>> "| Snapshots averaged (`n_averaged`) | 3 |" in render_model_card({"n_averaged": 3}).text
    True
"""

from hf_swa.hub.card import MODEL_CARD_NAME, TEMPLATE_NAME, render_model_card, write_model_card
from hf_swa.hub.folder import find_weight_files, load_swa_config
from hf_swa.hub.push import PUSH_IGNORE_PATTERNS, HubPushError, check_pushable, push_to_hub
from hf_swa.hub.results import RESULTS_FILE, load_results, nest_metrics

__all__ = [
    "MODEL_CARD_NAME",
    "TEMPLATE_NAME",
    "RESULTS_FILE",
    "nest_metrics",
    "PUSH_IGNORE_PATTERNS",
    "HubPushError",
    "load_swa_config",
    "load_results",
    "find_weight_files",
    "check_pushable",
    "render_model_card",
    "write_model_card",
    "push_to_hub",
]
