"""hf-swa-clm: a tiny GPT-2 trained from scratch on text files, scored by perplexity, with the numbers checked
against the saved weights (the live checkpoint, the shipped model) scored independently."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from tiny_models import needs_transformers_5
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_swa.clm.arguments import ClmDataArguments, ClmModelArguments
from hf_swa.clm.cli import main
from hf_swa.clm.data import group_texts, load_text
from hf_swa.clm.tokenizer import train_tokenizer

pytestmark = needs_transformers_5("its loss fix: on 4.57 the Trainer divides by the unshifted token count")

WORDS = "the a cat dog sat ran on under mat tree big small red blue and then it was".split()
TINY_GPT = "n_layer=2,n_embd=32,n_head=2,n_positions=64"


def documents(count: int, seed: int) -> list:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) for _ in range(count)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tokenizer trained offline, and train/validation/test text files of distinct documents."""
    root = tmp_path_factory.mktemp("clm")
    train_tokenizer(documents(50, 9), root / "tok", vocab_size=300, min_frequency=1)
    for name, count, seed in (("train", 60, 0), ("valid", 12, 1), ("test", 12, 2)):
        (root / f"{name}.txt").write_text("\n".join(documents(count, seed)) + "\n", encoding="utf-8")
    return root


def clm_flags(root, out, *extra) -> list:
    return [
        "--model_type", "gpt2", "--config_overrides", TINY_GPT, "--tokenizer_name", str(root / "tok"),
        "--train_file", str(root / "train.txt"), "--validation_file", str(root / "valid.txt"),
        "--test_file", str(root / "test.txt"), "--block_size", "16", "--do_train", "--do_eval",
        "--output_dir", str(out), "--max_steps", "12", "--per_device_train_batch_size", "4",
        "--learning_rate", "3e-3", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
        "--logging_strategy", "no", *extra,
    ]  # fmt: skip


def mean_token_loss(folder, root, split_file: str) -> float:
    """The model in `folder` scored on a text file's blocks here, without the Trainer."""
    tokenizer = AutoTokenizer.from_pretrained(root / "tok")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    lines = [line for line in (root / split_file).read_text().splitlines() if line.strip()]
    ids = [tokenizer(line + "\n")["input_ids"] + [tokenizer.eos_token_id] for line in lines]  # --keep_linebreaks
    blocks = torch.tensor(group_texts({"input_ids": ids}, 16)["input_ids"])
    with torch.no_grad():
        return model(input_ids=blocks, labels=blocks).loss.item()


def test_from_scratch_scores_live_candidates_and_shipped_by_perplexity(corpus, tmp_path):
    out = tmp_path / "run"
    flags = ["--swa_eval_candidates", "--swa_ema_decays", "0.9", "--save_strategy", "steps", "--save_steps", "12"]
    flags += ["--swa_ship", "swa"]  # an average ships (the default ships the live weights)
    assert main(clm_flags(corpus, out, *flags)) == 0
    results = json.loads((out / "results.json").read_text())
    shipped = json.loads((out / "swa_config.json").read_text())["shipped"]
    assert results["chosen"] == shipped == "swa" and results["lower_is_better"] == ["perplexity", "loss"]
    scores = results["eval"]
    assert {"live", "swa", "ema_0.9", "chosen", shipped} <= set(scores)
    for sets in scores.values():
        assert set(sets) == {"validation", "test"}
        for metrics in sets.values():
            assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-12)
    # The live weights are the checkpoint of the last step; the shipped model is the folder: scored here.
    live = mean_token_loss(out / "checkpoint-12", corpus, "test.txt")
    assert scores["live"]["test"]["loss"] == pytest.approx(live, rel=1e-5)
    assert scores["chosen"]["test"]["loss"] == pytest.approx(mean_token_loss(out, corpus, "test.txt"), rel=1e-5)
    assert scores["chosen"]["test"]["loss"] != pytest.approx(live, rel=1e-4)  # an average, not the live weights
    assert "causal-lm" in (out / "README.md").read_text()


def test_selection_text_chooses_the_lowest_loss(corpus, tmp_path):
    out = tmp_path / "select"
    flags = ["--select_file", str(corpus / "valid.txt"), "--swa_ema_decays", "0.5", "0.9"]
    main(clm_flags(corpus, out, *flags))
    results = json.loads((out / "results.json").read_text())
    choice = results["selection"]
    assert results["chosen"] == choice["chosen"] == min(choice["scores"], key=choice["scores"].get)
    assert results["train"]["select_samples"] >= 1


def test_held_out_documents_never_train(corpus):
    data = ClmDataArguments(train_file=str(corpus / "train.txt"), swa_select_split=0.2, validation_split_percentage=10)
    raw, held_out = load_text(data, seed=3)
    train = set(raw["train"]["text"])
    assert not train & set(raw["validation"]["text"]) and not train & set(raw["select"]["text"])
    assert held_out["select"]["documents"] == len(raw["select"]) == 12 and len(raw["validation"]) == 6
    assert len(train) + 18 == 60


def test_bad_input_is_refused_before_anything_runs(corpus, tmp_path):
    with pytest.raises(ValueError, match="--tokenizer_name"):
        ClmModelArguments(model_type="gpt2")
    with pytest.raises(ValueError, match="either --model_name_or_path"):
        ClmModelArguments()
    with pytest.raises(FileNotFoundError, match="--validation_file"):
        ClmDataArguments(train_file=str(corpus / "train.txt"), validation_file=str(tmp_path / "none.txt"))
    (tmp_path / "rows.jsonl").write_text('{"body": "the cat sat"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="mix types"):
        ClmDataArguments(train_file=str(corpus / "train.txt"), test_file=str(tmp_path / "rows.jsonl"))
    with pytest.raises(ValueError, match="has no column 'text'.*--text_column"):
        load_text(ClmDataArguments(train_file=str(tmp_path / "rows.jsonl")), seed=0)
    with pytest.raises(ValueError, match="--swa false trains without SWA"):
        main(clm_flags(corpus, tmp_path / "base", "--swa", "false", "--swa_select_split", "0.2"))
    with pytest.raises(ValueError, match="takes at most 64 positions"):
        main(clm_flags(corpus, tmp_path / "long", "--block_size", "128"))
    assert not (tmp_path / "long" / "results.json").exists()


def test_help_describes_the_flags(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "--validation_split_percentage" in capsys.readouterr().out
