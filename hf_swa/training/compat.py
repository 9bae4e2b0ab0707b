"""Shims for the oldest releases hf_swa supports (pyproject.toml's lower bounds), all in this one module.

Each names the release it serves; when the floor passes that release, the shim goes.
"""

try:  # transformers 5.x: one HfApi tagged with transformers' name, as the Trainer's own pushes use
    from transformers.utils.hub import hf_api
except ImportError:  # transformers 4.57: the Trainer pushes through huggingface_hub's plain HfApi
    from huggingface_hub import HfApi

    def hf_api() -> HfApi:
        return HfApi()


# What the RuntimeError of `from_pretrained` says for a checkpoint whose head has another size than the config:
# transformers 5.x names its flag `ignore_mismatched_sizes`; 4.57 lets torch's "size mismatch for ..." through.
MISMATCHED_SIZES_ERRORS = ("ignore_mismatched_sizes", "size mismatch")


def on_push_begin(trainer) -> None:
    """Send the callbacks' `on_push_begin` event of transformers 5.x (4.57 has none to send)."""
    event = getattr(trainer.callback_handler, "on_push_begin", None)
    if event is not None:
        event(trainer.args, trainer.state, trainer.control)
