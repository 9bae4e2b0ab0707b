"""Saved checkpoints for the post-hoc averaging and soup tests, and the float64 means they are checked against."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from tiny_models import tiny_bert, tiny_gpt2_lm


def save_seeds(root: Path, seeds, *, build=tiny_bert, dtype=torch.float32, **save_kwargs) -> list:
    """One tiny model per seed, saved with save_pretrained as ``root/seed{s}``."""
    folders = []
    for seed in seeds:
        folder = root / f"seed{seed}"
        build(seed=seed).to(dtype).save_pretrained(folder, **save_kwargs)
        folders.append(folder)
    return folders


def save_gpt2_seeds(root: Path, seeds, **kwargs) -> list:
    return save_seeds(root, seeds, build=tiny_gpt2_lm, **kwargs)


def stored_tensors(folder) -> dict:
    """Every tensor of a folder's safetensors weight files (single, sharded or adapter)."""
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def float64_mean(folders, weights=None) -> dict:
    """The weighted mean of the stored tensors, computed independently in float64."""
    states = [stored_tensors(f) for f in folders]
    weights = [1.0] * len(states) if weights is None else [float(w) for w in weights]
    total = sum(weights)
    return {
        name: sum(w * s[name].to(torch.float64) for w, s in zip(weights, states, strict=True)) / total
        for name in states[0]
    }


def folder_snapshot(folder) -> dict:
    """relative path -> sha256 of every file under ``folder`` (empty if it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
