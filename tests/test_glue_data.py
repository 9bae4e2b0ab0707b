"""run_glue's data as users see it: files load as written, labels become classes, columns and splits are checked."""

import dataclasses
import json

import datasets
import numpy as np
import pytest
import torch
from glue_fixtures import pair_rows, save_tiny_bert, save_tiny_gpt2, sentiment_rows, write_rows
from transformers import AutoTokenizer, BertConfig, HfArgumentParser

from hf_swa.glue.data import (
    encode_labels,
    evaluation_splits,
    example_ids,
    load_raw_datasets,
    prediction_splits,
    text_columns,
    tokenize,
)
from hf_swa.glue.modeling import _align_labels, load_model
from hf_swa.glue.run import DataTrainingArguments, GlueTrainingArguments, ModelArguments, run_glue
from hf_swa.glue.tasks import get_task


def load(tmp_path, task_name=None, **files):
    data_args = DataTrainingArguments(task_name=task_name, **{k: str(v) for k, v in files.items()})
    return load_raw_datasets(data_args, cache_dir=str(tmp_path / "cache"))


def labels_of(raw, split="train", column="label"):
    return [raw[split].features[column].int2str(i) for i in raw[split][column]]


# ----------------------------------------------------------------------------- reading files


def test_tsv_is_read_without_quote_mangling(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\n"odd quote at the start\t1\nhe said "stop" and left"\t0\nNA\t1\nnull\t0\n')
    train = load(tmp_path, train_file=path)["train"]
    assert train["sentence"] == ['"odd quote at the start', 'he said "stop" and left"', "NA", "null"]
    assert train["label"] == [1, 0, 1, 0] and train.features["label"].dtype == "int64"


def test_a_stray_tab_in_a_tsv_row_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tlabel\nC\tD\t0\nA plays\tguitar\tx\t1\n")
    with pytest.raises(
        ValueError, match=r"Could not read --train_file .*train\.tsv: .*Expected 3 fields in line 3, saw 4"
    ):
        load(tmp_path, train_file=path)


def test_csv_keeps_quoted_commas(tmp_path):
    path = tmp_path / "dev.csv"
    path.write_text('sentence1,sentence2,label\n"one, two",three,yes\nfour,"five, ""six""",no\n')
    dev = load(tmp_path, validation_file=path)["validation"]
    assert dev["sentence1"] == ["one, two", "four"]
    assert dev["sentence2"] == ["three", 'five, "six"']
    assert dev["label"] == ["yes", "no"]


def test_json_lines(tmp_path):
    rows = pair_rows(6, seed=0)
    raw = load(tmp_path, train_file=write_rows(tmp_path / "train.jsonl", rows))
    assert raw["train"]["premise"] == [r["premise"] for r in rows]
    assert raw["train"]["label"] == [r["label"] for r in rows]


def test_mnli_files_fill_matched_and_mismatched_splits(tmp_path):
    rows = pair_rows(6, seed=0)
    files = {name: write_rows(tmp_path / f"{name}.tsv", rows) for name in ("train", "dm", "dmm", "tm", "tmm")}
    raw = load(
        tmp_path,
        "mnli",
        train_file=files["train"],
        validation_file=files["dm"],
        validation_mismatched_file=files["dmm"],
        test_file=files["tm"],
        test_mismatched_file=files["tmm"],
    )
    assert sorted(raw) == ["test_matched", "test_mismatched", "train", "validation_matched", "validation_mismatched"]
    mnli = get_task("mnli")
    assert evaluation_splits(raw, mnli) == ["validation_matched", "validation_mismatched"]
    assert prediction_splits(raw, mnli) == [("test_matched", "MNLI-m"), ("test_mismatched", "MNLI-mm")]
    with pytest.raises(ValueError, match="--validation_mismatched_file only applies to --task_name mnli"):
        DataTrainingArguments(
            task_name="rte", train_file=str(files["train"]), validation_mismatched_file=str(files["dmm"])
        )


def test_example_ids_prefer_idx_then_index_then_row_numbers():
    assert example_ids(datasets.Dataset.from_dict({"idx": [7, 9], "s": ["a", "b"]})) == [7, 9]
    assert example_ids(datasets.Dataset.from_dict({"index": [3, 4], "s": ["a", "b"]})) == [3, 4]
    assert example_ids(datasets.Dataset.from_dict({"s": ["a", "b"]})) == [0, 1]


# ----------------------------------------------------------------------------- bad input, refused in flag terms


def test_files_are_checked_before_anything_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--validation_file '.*nope\.tsv': no such file"):
        DataTrainingArguments(validation_file=str(tmp_path / "nope.tsv"))
    parquet = tmp_path / "train.parquet"
    parquet.write_text("x")
    with pytest.raises(ValueError, match=r"--train_file .*unsupported file type; expected one of \.csv, \.tsv"):
        DataTrainingArguments(train_file=str(parquet))
    csv, tsv = (write_rows(tmp_path / f"t.{ext}", sentiment_rows(2, 0)) for ext in ("csv", "tsv"))
    with pytest.raises(ValueError, match=r"mix types \['\.csv', '\.tsv'\]"):
        DataTrainingArguments(train_file=str(csv), validation_file=str(tsv))


def test_unknown_task_is_rejected_listing_valid_ones():
    with pytest.raises(ValueError, match="Unknown GLUE task 'glue2'.*cola, sst2, mrpc"):
        DataTrainingArguments(task_name="glue2")
    with pytest.raises(ValueError, match="Pass --task_name"):
        DataTrainingArguments()


def test_missing_columns_are_named_with_the_columns_found(tmp_path):
    raw = load(tmp_path, train_file=write_rows(tmp_path / "train.tsv", [{"text_a": "x", "text_b": "y", "y": 1}]))
    with pytest.raises(ValueError, match=r"train split lacks the text column\(s\) \['sentence1', 'sentence2'\] "):
        text_columns(raw, get_task("mrpc"))
    with pytest.raises(
        ValueError, match=r"lacks the label column 'label' \(columns found: \['text_a', 'text_b', 'y'\]"
    ):
        encode_labels(raw, None, "label", ["train"])
    assert text_columns(raw, None, ["text_a", "text_b"]) == ("text_a", "text_b")
    with pytest.raises(ValueError, match=r"lacks the text column\(s\) \?.*Pass --text_columns"):
        text_columns(raw, None)
    with pytest.raises(ValueError, match="one or two column names"):
        text_columns(raw, None, ["a", "b", "c"])


def test_label_set_mismatch_between_train_and_validation(tmp_path):
    train = write_rows(tmp_path / "train.csv", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    dev = write_rows(tmp_path / "dev.csv", [{"text": "c", "label": "pos"}, {"text": "d", "label": "neutral"}])
    raw = load(tmp_path, train_file=train, validation_file=dev)
    with pytest.raises(
        ValueError, match=r"validation split has labels \['neutral'\].*not the classes \['neg', 'pos'\]"
    ):
        encode_labels(raw, None, "label", ["train", "validation"])


def test_glue_task_with_labels_that_are_not_its_classes(tmp_path):
    rows = pair_rows(4, seed=0, label_names=("entailment", "maybe"))
    raw = load(tmp_path, "mnli", train_file=write_rows(tmp_path / "train.tsv", rows))
    with pytest.raises(ValueError, match=r"train split has labels \['maybe'\].*\['entailment', 'neutral'"):
        encode_labels(raw, get_task("mnli"), "label", ["train"])


def test_a_missing_label_is_an_error_naming_the_example(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"sentence": "a", "label": "pos"}\n{"sentence": "b"}\n{"sentence": "c", "label": "neg"}\n')
    with pytest.raises(ValueError, match="no label in column 'label' for example 1"):
        encode_labels(load(tmp_path, train_file=path), None, "label", ["train"])


@pytest.mark.parametrize("missing", ["nan", "NaN", "NA", "null", "N/A"])
def test_a_label_that_reads_as_missing_is_refused_not_made_a_class(tmp_path, missing):
    # A label `nan` became a third class called "nan" (and a 3-class model trained without a word).
    rows = [{"sentence": w, "label": label} for w, label in [("good", "pos"), ("bad", "neg"), ("fine", missing)]]
    path = write_rows(tmp_path / "train.csv", rows)
    with pytest.raises(
        ValueError,
        match=rf"train split \(--train_file .*train\.csv\) has no label in column 'label' for example 2 .*"
        rf"'{missing}' reads as missing\. Fill in the label or remove the row",
    ):
        encode_labels(load(tmp_path, train_file=path), None, "label", ["train"], {"train": ("train_file", str(path))})
    rows[2]["label"] = "None"  # a class may be called None
    assert encode_labels(load(tmp_path, train_file=write_rows(path, rows)), None, "label", ["train"]) == [
        "None",
        "neg",
        "pos",
    ]


def test_a_missing_float_label_is_refused_for_regression(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "label": 1.5}\n{"sentence1": "c", "sentence2": "d", "label": NaN}\n'
    )
    with pytest.raises(ValueError, match=r"no label in column 'label' for example 1 .*nan reads as missing"):
        encode_labels(load(tmp_path, "stsb", train_file=path), get_task("stsb"), "label", ["train"])


def _run(tmp_path, bert, **files):
    out = tmp_path / "out"
    args = GlueTrainingArguments(output_dir=str(out), do_train=True, do_eval="validation_file" in files, max_steps=2)
    run_glue(ModelArguments(str(bert)), DataTrainingArguments(**{k: str(v) for k, v in files.items()}), args)


BAD_FILES = [
    # (train file text, validation file text or None, the message): each refused before anything is written.
    ("sentence,label\ngood,pos\nbad,neg\nfine,nan\n", None, r"--train_file .*train\.csv\) has no label .* 'nan'"),
    (
        "sentence\ngood\nbad\n",
        "sentence,label\ngood,pos\nbad,neg\n",
        r"train split \(--train_file .*train\.csv\) lacks the label column 'label' \(columns found: \['sentence'\]\)",
    ),
    ("sentence,label\n", None, r"--train_file .*train\.csv has a header line \('sentence,label'\) but no rows"),
    ("", None, r"--train_file .*train\.csv is empty\. .* or drop --train_file"),
    ("\n\n", "sentence,label\ngood,pos\n", r"--train_file .*train\.csv is empty"),
    ("sentence,label\ngood,pos\nbad,neg\n", "", r"--validation_file .*dev\.csv is empty"),
]


@pytest.mark.parametrize("train_text, dev_text, message", BAD_FILES)
def test_bad_data_files_are_refused_naming_the_file_before_anything_is_written(tmp_path, train_text, dev_text, message):
    bert = save_tiny_bert(tmp_path / "bert")
    (tmp_path / "train.csv").write_text(train_text)
    files = {"train_file": tmp_path / "train.csv"}
    if dev_text is not None:
        (tmp_path / "dev.csv").write_text(dev_text)
        files["validation_file"] = tmp_path / "dev.csv"
    with pytest.raises(ValueError, match=message):
        _run(tmp_path, bert, **files)
    assert not (tmp_path / "out").exists()


def test_an_empty_json_lines_file_is_refused_naming_it(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"--train_file .*train\.jsonl is empty"):
        load(tmp_path, train_file=tmp_path / "train.jsonl")


def test_a_test_file_without_labels_still_loads_beside_labelled_files(tmp_path):
    train = write_rows(
        tmp_path / "train.csv", [{"sentence": "good", "label": "pos"}, {"sentence": "bad", "label": "neg"}]
    )
    test = write_rows(tmp_path / "test.csv", [{"sentence": "fine"}])
    raw = load(tmp_path, train_file=train, test_file=test)
    assert raw["test"].column_names == ["sentence"] and encode_labels(raw, None, "label", ["train"]) == ["neg", "pos"]


def test_offline_hub_gives_a_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match=r"Could not load nyu-mll/glue/rte.*pass local files.*--train_file"):
        load_raw_datasets(DataTrainingArguments(task_name="rte"))


def test_run_glue_needs_the_split_each_stage_uses(tmp_path):
    train = write_rows(tmp_path / "train.tsv", sentiment_rows(4, seed=0))
    with pytest.raises(ValueError, match=r"--do_eval needs data to work on: pass --validation_file"):
        run_glue(
            ModelArguments(model_name_or_path=str(tmp_path / "no-model"), cache_dir=str(tmp_path / "cache")),
            DataTrainingArguments(task_name="sst2", train_file=str(train)),
            GlueTrainingArguments(output_dir=str(tmp_path / "out"), do_eval=True, report_to="none"),
        )


# ----------------------------------------------------------------------------- labels


def test_hub_layout_is_used_as_is(monkeypatch):
    """The nyu-mll/glue layout: ClassLabel ids, test labels -1, an idx column."""
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(labels):
        n = len(labels)
        return datasets.Dataset.from_dict(
            {"premise": ["p"] * n, "hypothesis": ["h"] * n, "label": labels, "idx": list(range(10, 10 + n))},
            features=features,
        )

    fake = datasets.DatasetDict(
        {"train": split([0, 1, 2, 0]), "validation_matched": split([2, 1]), "test_matched": split([-1, -1])}
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or fake)
    raw = load_raw_datasets(DataTrainingArguments(task_name="mnli"))
    assert calls == [("nyu-mll/glue", "mnli")]
    assert encode_labels(raw, get_task("mnli"), "label", ["train", "validation_matched"]) == [
        "entailment",
        "neutral",
        "contradiction",
    ]
    assert raw["validation_matched"]["label"] == [2, 1] and example_ids(raw["test_matched"]) == [10, 11]


def test_glue_labels_accept_ids_and_names(tmp_path):
    rows = [{"sentence": "a", "label": 1}, {"sentence": "b", "label": 0}]
    raw = load(tmp_path, "cola", train_file=write_rows(tmp_path / "cola.tsv", rows))
    assert encode_labels(raw, get_task("cola"), "label", ["train"]) == ["unacceptable", "acceptable"]
    assert raw["train"]["label"] == [1, 0]
    rows = pair_rows(6, seed=0, keys=("sentence1", "sentence2"), label_names=("not_entailment", "entailment"))
    raw = load(tmp_path, "rte", train_file=write_rows(tmp_path / "rte.jsonl", rows))
    encode_labels(raw, get_task("rte"), "label", ["train"])
    assert raw["train"]["label"] == [1, 0, 1, 0, 1, 0]  # rte: entailment=0


def test_custom_string_labels_are_encoded_sorted_and_numbers_sorted_numerically(tmp_path):
    rows = pair_rows(9, seed=0, keys=("sentence1", "sentence2"), label_names=("pos", "neg", "neutral"))
    dev = pair_rows(3, seed=1, keys=("sentence1", "sentence2"), label_names=("neutral", "pos"))
    raw = load(tmp_path, train_file=write_rows(tmp_path / "train.jsonl", rows), validation_file=write_rows(
        tmp_path / "dev.jsonl", dev))  # fmt: skip
    assert encode_labels(raw, None, "label", ["train", "validation"]) == ["neg", "neutral", "pos"]
    assert raw["train"]["label"][:3] == [2, 0, 1] and raw["validation"]["label"] == [1, 2, 1]  # one mapping for both
    rows = [{"text": str(i), "label": label} for i, label in enumerate([10, 2, 33, 2])]
    raw = load(tmp_path, train_file=write_rows(tmp_path / "n.csv", rows))
    assert encode_labels(raw, None, "label", ["train"]) == ["2", "10", "33"]
    assert raw["train"]["label"] == [1, 0, 2, 0]


def test_regression_for_stsb_and_for_float_labels(tmp_path):
    rows = [{"sentence1": "a", "sentence2": "b", "label": s} for s in ("0.5", "3.25", "5.000", "2")]
    path = write_rows(tmp_path / "stsb.tsv", rows)
    raw = load(tmp_path, "stsb", train_file=path)
    assert encode_labels(raw, get_task("stsb"), "label", ["train"]) is None
    assert raw["train"]["label"] == [0.5, 3.25, 5.0, 2.0]
    assert encode_labels(load(tmp_path, train_file=path), None, "label", ["train"]) is None  # custom float labels


def test_model_config_label_order_is_kept_when_it_names_the_same_classes():
    config = BertConfig(id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"})
    label_to_id = _align_labels(config, ["entailment", "neutral", "contradiction"], training=False)
    assert label_to_id == {0: 2, 1: 1, 2: 0}  # data id -> model id
    assert config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}
    other = BertConfig(id2label={0: "negative", 1: "positive"})
    with pytest.raises(ValueError, match=r"fine-tuned on classes \['negative', 'positive'\] but the data has"):
        _align_labels(other, ["no", "yes"], training=False)
    assert _align_labels(other, ["no", "yes"], training=True) is None and other.id2label == {0: "no", 1: "yes"}
    # Evaluating a 3-class model on a dev set that happens to hold two of its classes keeps all three ids.
    three = BertConfig(id2label={0: "neg", 1: "neutral", 2: "pos"})
    assert _align_labels(three, ["neg", "pos"], training=False) == {0: 0, 1: 2} and three.num_labels == 3
    with pytest.raises(ValueError, match="fine-tuned on classes"):  # a class the model never learnt
        _align_labels(BertConfig(id2label={0: "neg", 1: "pos"}), ["neg", "neutral", "pos"], training=False)


# ----------------------------------------------------------------------------- tokenization and models


def test_tokenize_pairs_with_truncation_and_labels(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(save_tiny_bert(tmp_path / "bert"))
    rows = pair_rows(4, seed=0, keys=("sentence1", "sentence2"), label_names=("pos", "neg"))
    raw = load(
        tmp_path,
        train_file=write_rows(tmp_path / "train.jsonl", rows),
        test_file=write_rows(tmp_path / "test.jsonl", [{k: v for k, v in r.items() if k != "label"} for r in rows]),
    )
    encode_labels(raw, None, "label", ["train"])
    columns = ("sentence1", "sentence2")
    data = tokenize(raw, tokenizer, columns, DataTrainingArguments("mrpc", max_seq_length=6), ["train"],
                    "label")  # fmt: skip
    assert set(data["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert "labels" not in data["test"].column_names
    assert data["train"]["labels"] == [1, 0, 1, 0]  # neg=0, pos=1
    first = data["train"][0]["input_ids"]
    assert len(first) == 6 and first[0] == tokenizer.cls_token_id and first.count(tokenizer.sep_token_id) == 2
    full = tokenize(raw, tokenizer, columns, DataTrainingArguments("mrpc"), ["train"], "label", {0: 1, 1: 0})
    assert len(full["train"][0]["input_ids"]) == 1 + 5 + 1 + 3 + 1  # [CLS] 5 words [SEP] 3 words [SEP]
    assert full["train"]["labels"] == [0, 1, 0, 1]  # the model's ids


def test_gpt2_tokenizer_without_pad_token_pads_with_eos(tmp_path):
    folder = save_tiny_gpt2(tmp_path / "gpt2")
    model, tokenizer, label_to_id = load_model(ModelArguments(str(folder)), None, ["a", "b", "c"], training=True)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert model.config.pad_token_id == tokenizer.eos_token_id
    assert model.config.num_labels == 3 and model.config.label2id == {"a": 0, "b": 1, "c": 2} and label_to_id is None
    # A padded batch classifies each row exactly as when the row is alone (the last real token is pooled).
    model.eval()
    short, long = "the good film", "the movie was very bad and sad"
    batch = tokenizer([short, long], padding=True, return_tensors="pt")
    assert (batch["input_ids"][0] == tokenizer.pad_token_id).any()
    with torch.no_grad():
        together = model(**batch).logits
        alone = model(**tokenizer([short], return_tensors="pt")).logits
    np.testing.assert_allclose(together[0].numpy(), alone[0].numpy(), atol=1e-5)


def tail_lr(args) -> float:
    """The LR the SWA tail holds for a run with `args` (the Trainer's optimizer starts at learning_rate)."""
    from hf_swa.training.schedule import install_lr_tail

    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=args.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    install_lr_tail(scheduler, args.to_swa_config(), start_step=1)
    return scheduler.get_last_lr()[0]


def test_cli_parsing_text_columns_and_glue_defaults(tmp_path):
    train = write_rows(tmp_path / "t.csv", sentiment_rows(2, 0))
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, GlueTrainingArguments))
    model_args, data_args, args = parser.parse_args_into_dataclasses(
        args=["--model_name_or_path", "m", "--train_file", str(train), "--text_columns", "q", "a"]
        + ["--label_column", "y", "--output_dir", str(tmp_path), "--learning_rate", "4e-5", "--report_to", "none"]
    )
    assert data_args.text_columns == ["q", "a"] and data_args.label_column == "y"
    assert args.swa and args.swa_start == 0.5 and tail_lr(args) == pytest.approx(2e-5)
    faster = dataclasses.replace(args, learning_rate=1e-4)  # the tail follows the peak LR
    assert tail_lr(faster) == pytest.approx(5e-5)
    explicit = dataclasses.replace(args, swa_lr=3e-6)
    assert tail_lr(explicit) == pytest.approx(3e-6)
    config = tmp_path / "config.json"
    options = {"model_name_or_path": "m", "task_name": "SST-2", "output_dir": str(tmp_path), "swa_lr_ratio": 0}
    config.write_text(json.dumps({**options, "report_to": "none"}))
    _, data_args, args = parser.parse_json_file(json_file=str(config))
    assert data_args.task_name == "sst2" and not args.to_swa_config().has_lr_tail  # ratio 0: the base schedule
    with pytest.raises(ValueError, match="swa_lr_ratio must be in"):
        GlueTrainingArguments(output_dir=str(tmp_path), swa_lr_ratio=2.0, report_to="none")


def test_classification_head_of_another_size_needs_ignore_mismatched_sizes(tmp_path):
    folder = save_tiny_bert(tmp_path / "finetuned", num_labels=2, head=True)
    with pytest.raises(ValueError, match=r"head whose size differs from the data's 3 output\(s\).*--ignore_mismatched"):
        load_model(ModelArguments(str(folder)), None, ["a", "b", "c"], training=True)
    model, _, _ = load_model(ModelArguments(str(folder), ignore_mismatched_sizes=True), None, ["a", "b", "c"], True)
    assert model.classifier.out_features == 3


def test_local_files_without_a_cache_dir_leave_no_cache_behind(tmp_path):
    from pathlib import Path

    cache = Path(datasets.config.HF_DATASETS_CACHE)
    before = set(cache.rglob("*")) if cache.exists() else set()
    path = write_rows(tmp_path / "train.tsv", sentiment_rows(4, seed=0))
    raw = load_raw_datasets(DataTrainingArguments(train_file=str(path)))  # no --cache_dir: read into memory
    assert raw["train"]["label"] == [0, 1, 0, 1] and raw["train"].cache_files == []
    assert (set(cache.rglob("*")) if cache.exists() else set()) == before
    assert list(tmp_path.iterdir()) == [path]  # the scratch folder is gone too
