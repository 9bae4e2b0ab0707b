"""Causal LM: train with SWA from a checkpoint, a GGUF file or from scratch (``run_clm``, ``hf-swa-clm``), scored
by loss and perplexity (lower is better) into the nested results that ``hf-swa-report``, the card and
``hf-swa-push`` read. The modules that import the Trainer or ``datasets`` (``run``, ``data``) load only when used.

>>> from hf_swa.clm import add_perplexity
>>> add_perplexity({"live": {"test": {"loss": 0.0}}})
{'live': {'test': {'loss': 0.0, 'perplexity': 1.0}}}
"""

from hf_swa.clm.arguments import ClmDataArguments, ClmModelArguments

__all__ = ["ClmModelArguments", "ClmDataArguments", "add_perplexity", "run_clm"]


def __getattr__(name: str):
    if name in ("run_clm", "add_perplexity"):
        from hf_swa.clm import run

        return getattr(run, name)
    raise AttributeError(f"module 'hf_swa.clm' has no attribute {name!r}")
