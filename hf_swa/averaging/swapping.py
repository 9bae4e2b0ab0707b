"""Which weights the model holds: a candidate swapped in, the live weights kept aside bit-exactly, and back.

`WeightSwapping` is the swapping half of `hf_swa.averaging.averager.WeightAverager` (a base class
of it): it writes a candidate into the model's averaged tensors and keeps the live weights in
one copy (their dtype, their device) until they are put back, also on error.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn

from . import distributed
from .candidates import MAIN_CANDIDATE
from .parameters import averaged_parameters


class WeightSwapping:
    """Swap candidates into a model and the live weights back. `WeightAverager` provides the candidates.

    The host class provides ``names``, ``_store(name)``, ``_tensors(model)``, ``require_snapshot()``,
    ``_new_buffer(like, dtype)`` and ``sharded``.

    Example:
        >>> import torch
        >>> from hf_swa import WeightAverager
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> averager = WeightAverager(model)
        >>> _ = averager.update(model)
        >>> averager.swap_in(model); averager.held, averager.keeps_live_weights
        ('swa', True)
        >>> averager.swap_out(model); averager.held
    """

    _in_model: Optional[str] = None  # the candidate the model holds; None: its live weights
    _live_copy: Optional[List[torch.Tensor]] = None  # the live weights kept aside by swap_in

    @property
    def holds_averages(self) -> bool:
        """True while `swap_in` has put a candidate into the model (live weights kept aside)."""
        return self._in_model is not None

    @property
    def keeps_live_weights(self) -> bool:
        """True while `swap_in` keeps the live weights aside for `swap_out` to put back."""
        return self._live_copy is not None

    def kept_live_weights(self) -> Dict[str, torch.Tensor]:
        """The live weights `swap_in` keeps aside, by parameter name (the tensors themselves; empty when none)."""
        return dict(zip(self.names, self._live_copy)) if self._live_copy is not None else {}

    @property
    def held(self) -> Optional[str]:
        """The name of the candidate in the model, or ``None`` while it holds its live weights."""
        return self._in_model

    @torch.no_grad()
    def copy_to(self, model: nn.Module, name: str = MAIN_CANDIDATE) -> None:
        """Overwrite the model's weights with a candidate (cast to each parameter's dtype).

        The model then holds `name` (`held`), and a later `averaged_weights()` puts it back.
        Live weights kept aside by `swap_in` stay kept; over live weights nothing is kept,
        and `swap_out`/`live_weights` refuse.
        """
        self.require_snapshot()
        self._store(name).write(name, self._tensors(model))
        self._in_model = name
        self._written(model)

    @torch.no_grad()
    def swap_in(self, model: nn.Module, name: str = MAIN_CANDIDATE) -> None:
        """Put a candidate into the model, keeping the live weights aside bit-exactly.

        The live weights are kept in one copy of the averaged parameters (their dtype, their
        device) until `swap_out` puts them back and frees it.
        """
        self.require_snapshot()
        store = self._store(name)
        if self._in_model == name:
            return
        tensors = self._tensors(model)
        if self._in_model is None:  # a copy of the live weights, in their dtype, beside them; freed by swap_out
            self._live_copy = [self._new_buffer(t, t.dtype) for t in tensors]
            torch._foreach_copy_(self._live_copy, tensors)
        store.write(name, tensors)
        self._in_model = name
        self._written(model)

    @torch.no_grad()
    def swap_out(self, model: nn.Module) -> None:
        """Put the live weights kept by `swap_in` back into the model."""
        if self._in_model is None:
            return
        if self._live_copy is None:
            raise RuntimeError(
                f"The model holds {self._in_model!r}, which copy_to overwrote the live weights with: no live weights "
                "are kept to put back. Use swap_in (or averaged_weights) to keep them aside."
            )
        torch._foreach_copy_(self._tensors(model), self._live_copy)
        self._in_model = None
        self._live_copy = None
        self._written(model)

    def _restore(self, model: nn.Module, name: Optional[str]) -> None:
        if name is None:
            self.swap_out(model)
        else:
            self.swap_in(model, name)

    def _written(self, model: nn.Module) -> None:
        # ZeRO-3 keeps small parameters gathered: re-gather them from the partitions just written.
        if self.sharded:
            distributed.refresh_gathered(p for _, p in averaged_parameters(model))

    @contextlib.contextmanager
    def averaged_weights(self, model: nn.Module, name: str = MAIN_CANDIDATE) -> Iterator[nn.Module]:
        """Within the block the model holds a candidate; what it held comes back after, even on error."""
        before = self._in_model
        self.swap_in(model, name)
        try:
            yield model
        finally:
            self._restore(model, before)

    @contextlib.contextmanager
    def live_weights(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block the model holds its live weights, even if a candidate was swapped in."""
        before = self._in_model
        self.swap_out(model)
        try:
            yield model
        finally:
            self._restore(model, before)

    def release_live_weights(self) -> None:
        """Forget the live weights kept by `swap_in` (the model keeps the candidate)."""
        self._in_model = None
        self._live_copy = None
