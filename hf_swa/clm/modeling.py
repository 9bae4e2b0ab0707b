"""The model and tokenizer of ``run_clm``: a checkpoint (a folder, a Hub id, or a GGUF file inside one) or a new
model of ``--model_type`` built from its config with ``--config_overrides``, as HF's ``run_clm.py`` does.

A new model's vocabulary is the tokenizer's (unless ``--config_overrides`` sets ``vocab_size``), and its
end-of-text and padding ids are the tokenizer's end-of-text token.
"""

from __future__ import annotations

import logging

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_swa.clm.arguments import ClmModelArguments

logger = logging.getLogger(__name__)

__all__ = ["load_model_and_tokenizer", "block_size_for", "declare_causal_lm_loss", "dense_gguf_model"]

#: The longest block ``run_clm`` picks by itself (a longer one must be asked for with --block_size).
MAX_DEFAULT_BLOCK = 1024


def _hub_options(args: ClmModelArguments) -> dict:
    options = dict(cache_dir=args.cache_dir, revision=args.model_revision, token=args.token)
    return dict(options, trust_remote_code=args.trust_remote_code)


def load_model_and_tokenizer(args: ClmModelArguments) -> tuple:
    """``(model, tokenizer)``; the tokenizer gets a pad token (its end-of-text token) when it has none."""
    options = _hub_options(args)
    gguf = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path, **options, **gguf)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if args.from_scratch:
        config = AutoConfig.for_model(args.model_type)
        config.vocab_size = len(tokenizer)
        if args.config_overrides:
            logger.info("Overriding config: %s", args.config_overrides)
            config.update_from_string(args.config_overrides)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(config, name, tokenizer.eos_token_id)
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=args.trust_remote_code)
        logger.info("A new %s model of %.1fM parameters", args.model_type, model.num_parameters() / 1e6)
        return declare_causal_lm_loss(model), tokenizer
    dtype = args.torch_dtype if args.torch_dtype in (None, "auto") else getattr(torch, args.torch_dtype)
    if args.gguf_file and dtype is None:
        dtype = torch.float32  # GGUF weights dequantize to fp32 to train
    model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=dtype, **options, **gguf)
    if args.gguf_file:
        dense_gguf_model(model)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return declare_causal_lm_loss(model), tokenizer


def dense_gguf_model(model):
    """A model loaded from a GGUF file, marked as the plain model it is.

    Its weights are dequantized to dense tensors as they load, yet transformers keeps a GGUF "quantizer" on the model,
    and the Trainer then refuses to train it ("purely quantized models") and ``save_pretrained`` to save it. The
    mark goes, so that the model trains, averages and saves as a dense checkpoint.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) == "gguf":
        quantizer.remove_quantization_config(model)
    return model


def declare_causal_lm_loss(model):
    """Name the loss of a causal LM whose class name does not (``GPT2LMHeadModel``: ``loss_type`` None).

    Its loss is ``ForCausalLM``'s all the same, but the Trainer then counts the tokens of a batch before the
    shift (``block_size``, not ``block_size - 1`` a block) and divides the summed loss by that count: the
    training loss and the evaluation loss come out ``(block_size - 1) / block_size`` of the mean token loss,
    and the perplexity too low.

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> declare_causal_lm_loss(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2))).loss_type
    'ForCausalLM'
    """
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"
    return model


def block_size_for(requested, tokenizer, model) -> int:
    """``--block_size``, else the longest the tokenizer and model take, at most ``MAX_DEFAULT_BLOCK``; refused
    above the model's positions.

    >>> from types import SimpleNamespace
    >>> block_size_for(None, SimpleNamespace(model_max_length=10**30), SimpleNamespace(config=SimpleNamespace(
    ...     max_position_embeddings=2048)))
    1024
    """
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    longest = min(x for x in (tokenizer.model_max_length, positions, MAX_DEFAULT_BLOCK) if x)
    if requested is None:
        return longest
    if positions and requested > positions:
        raise ValueError(f"--block_size {requested}: the model takes at most {positions} positions; pass fewer.")
    return requested
