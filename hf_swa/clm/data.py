"""The text of ``run_clm``: files read through ``datasets``, split by document, tokenized and grouped into blocks.

Splits: ``train``; ``validation`` (``--validation_file``, else ``--validation_split_percentage`` of the training
documents); ``test`` (``--test_file``); ``select``, the text the SWA candidates are chosen on (``--select_file``,
or ``--swa_select_split`` of the training documents). Held-out shares are whole documents (rows), taken before
grouping, so no block of a held-out document is trained on. Each document ends with the tokenizer's end-of-text
token, then the documents of a split are concatenated and cut into ``block_size`` blocks (the remainder is dropped),
as HF's ``run_clm.py`` does.

Example:
    >>> group_texts({"input_ids": [[1, 2, 3], [4, 5, 6, 7, 8]]}, block_size=3)
    {'input_ids': [[1, 2, 3], [4, 5, 6]], 'labels': [[1, 2, 3], [4, 5, 6]]}
"""

from __future__ import annotations

import logging
import os
from itertools import chain

import datasets

from hf_swa.clm.arguments import DATA_FILE_FLAGS, TEXT_FILE_TYPES, ClmDataArguments

logger = logging.getLogger(__name__)

__all__ = ["load_text", "tokenize_and_group", "group_texts", "SELECT_SPLIT_NAME"]

#: The split the SWA candidates are chosen on.
SELECT_SPLIT_NAME = "select"


def load_text(data_args: ClmDataArguments, seed: int, cache_dir=None) -> tuple:
    """``(raw splits, record of what was held out)``: the files given, plus the shares carved from training."""
    files = data_args.data_files()
    loader = TEXT_FILE_TYPES[os.path.splitext(next(iter(files.values())))[1].lower()]
    options = {"keep_linebreaks": data_args.keep_linebreaks} if loader == "text" else {}
    raw = datasets.load_dataset(loader, data_files=files, cache_dir=cache_dir, **options)
    for split in raw:
        if data_args.text_column not in raw[split].column_names:
            flag = next(name for name, s in DATA_FILE_FLAGS.items() if s == split)
            raise ValueError(
                f"--{flag} {files[split]!r} has no column {data_args.text_column!r} (columns: "
                f"{raw[split].column_names}): pass --text_column."
            )
        raw[split] = raw[split].filter(lambda row: bool((row[data_args.text_column] or "").strip()))
    held_out, documents = {}, len(raw["train"]) if "train" in raw else 0
    if "train" in raw and "validation" not in raw and data_args.validation_split_percentage:
        share = data_args.validation_split_percentage / 100
        held_out["validation"] = _hold_out(raw, "validation", share, seed, documents)
    if "train" in raw and data_args.swa_select_split:
        held_out[SELECT_SPLIT_NAME] = _hold_out(raw, SELECT_SPLIT_NAME, data_args.swa_select_split, seed, documents)
    return raw, held_out


def _hold_out(raw, split: str, share: float, seed: int, documents: int) -> dict:
    """Move a seeded `share` of the `documents` of the training file (at least one, leaving at least one) from the
    training split into `split`."""
    count = len(raw["train"])
    size = min(max(1, round(share * documents)), count - 1)
    if size < 1:
        raise ValueError(f"The training text has {count} document(s): too few to hold out {split} documents from.")
    parts = raw["train"].train_test_split(test_size=size, seed=seed, shuffle=True)
    raw["train"], raw[split] = parts["train"], parts["test"]
    return {"share": share, "seed": seed, "documents": size, "of": documents}


def tokenize_and_group(raw, tokenizer, data_args: ClmDataArguments, block_size: int, main_process_first) -> dict:
    """Every split as blocks of `block_size` tokens with ``labels`` (the model shifts them)."""
    column, eos = data_args.text_column, tokenizer.eos_token_id

    def tokenize(batch):
        encoded = tokenizer(batch[column])
        if eos is not None:
            encoded["input_ids"] = [ids + [eos] for ids in encoded["input_ids"]]
        return {"input_ids": encoded["input_ids"]}

    options = dict(batched=True, num_proc=data_args.preprocessing_num_workers)
    options.update(load_from_cache_file=not data_args.overwrite_cache)
    blocks = {}
    with main_process_first(desc="tokenizing and grouping the text"):
        for split, rows in raw.items():
            ids = rows.map(tokenize, remove_columns=rows.column_names, desc=f"tokenizing {split}", **options)
            grouped = ids.map(group_texts, fn_kwargs={"block_size": block_size}, desc=f"{split}: blocks", **options)
            if len(grouped) == 0:
                raise ValueError(
                    f"The {split} text has fewer than --block_size {block_size} tokens: pass more text or a "
                    "smaller --block_size."
                )
            blocks[split] = grouped
    limits = {"train": data_args.max_train_samples}
    for split, rows in blocks.items():
        limit = limits.get(split, data_args.max_eval_samples)
        if limit is not None and limit < len(rows):
            blocks[split] = rows.select(range(limit))
    return blocks


def group_texts(examples: dict, block_size: int) -> dict:
    """Concatenate the token lists and cut them into blocks of `block_size` (the remainder is dropped)."""
    ids = list(chain.from_iterable(examples["input_ids"]))
    total = len(ids) // block_size * block_size
    blocks = [ids[i : i + block_size] for i in range(0, total, block_size)]
    return {"input_ids": blocks, "labels": [list(block) for block in blocks]}
