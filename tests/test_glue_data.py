"""GLUE data loading: local CSV/TSV/JSON-lines files, the Hub path (mocked), labels, tokenization, errors."""

import dataclasses
import json

import datasets
import numpy as np
import pytest
import torch
from glue_fixtures import pair_rows, save_tiny_bert, save_tiny_gpt2, sentiment_rows, write_rows
from transformers import AutoTokenizer, BertConfig, DataCollatorWithPadding, HfArgumentParser

from hf_swa.glue.data import (
    check_columns,
    evaluation_splits,
    example_ids,
    load_raw_datasets,
    prediction_splits,
    resolve_text_columns,
    tokenize_datasets,
)
from hf_swa.glue.labels import LabelInfo, align_with_model_config, infer_labels
from hf_swa.glue.modeling import prepare_model_and_tokenizer
from hf_swa.glue.run import DataTrainingArguments, GlueTrainingArguments, ModelArguments, run_glue

# ----------------------------------------------------------------------------- reading files


def test_tsv_is_read_without_quote_mangling(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\n"odd quote at the start\t1\nhe said "stop" and left"\t0\nNA\t1\nnull\t0\n')
    train = load_raw_datasets(train_file=str(path))["train"]
    assert train["sentence"] == ['"odd quote at the start', 'he said "stop" and left"', "NA", "null"]
    assert train["label"] == [1, 0, 1, 0] and train.features["label"].dtype == "int64"


def test_csv_keeps_quoted_commas(tmp_path):
    path = tmp_path / "dev.csv"
    path.write_text('sentence1,sentence2,label\n"one, two",three,yes\nfour,"five, ""six""",no\n')
    dev = load_raw_datasets(validation_file=str(path))["validation"]
    assert dev["sentence1"] == ["one, two", "four"]
    assert dev["sentence2"] == ["three", 'five, "six"']
    assert dev["label"] == ["yes", "no"]


def test_json_lines_and_json_array(tmp_path):
    rows = pair_rows(6, seed=0)
    lines = write_rows(tmp_path / "train.jsonl", rows)
    array = tmp_path / "dev.json"
    array.write_text(json.dumps(rows[:3]))
    raw = load_raw_datasets(train_file=str(lines), validation_file=str(array))
    assert raw["train"]["premise"] == [r["premise"] for r in rows]
    assert raw["validation"]["label"] == ["entailment", "neutral", "contradiction"]


def test_mnli_files_fill_matched_and_mismatched_splits(tmp_path):
    rows = pair_rows(6, seed=0)
    files = {name: str(write_rows(tmp_path / f"{name}.tsv", rows)) for name in ("train", "dm", "dmm", "tm", "tmm")}
    raw = load_raw_datasets(
        "mnli",
        train_file=files["train"],
        validation_file=files["dm"],
        validation_mismatched_file=files["dmm"],
        test_file=files["tm"],
        test_mismatched_file=files["tmm"],
    )
    assert sorted(raw) == ["test_matched", "test_mismatched", "train", "validation_matched", "validation_mismatched"]
    assert evaluation_splits(raw, "mnli") == ["validation_matched", "validation_mismatched"]
    assert prediction_splits(raw, "mnli") == [("test_matched", "MNLI-m"), ("test_mismatched", "MNLI-mm")]
    with pytest.raises(ValueError, match="--validation_mismatched_file only apply to task_name=mnli"):
        load_raw_datasets("rte", train_file=files["train"], validation_mismatched_file=files["dmm"])


def test_example_ids_prefer_idx_then_index_then_row_numbers():
    assert example_ids(datasets.Dataset.from_dict({"idx": [7, 9], "s": ["a", "b"]})) == [7, 9]
    assert example_ids(datasets.Dataset.from_dict({"index": [3, 4], "s": ["a", "b"]})) == [3, 4]
    assert example_ids(datasets.Dataset.from_dict({"s": ["a", "b"]})) == [0, 1]


# ----------------------------------------------------------------------------- bad input


def test_missing_file_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--validation_file '.*nope\.tsv': no such file"):
        load_raw_datasets(validation_file=str(tmp_path / "nope.tsv"))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"unsupported file type '\.parquet'.*\.csv, \.tsv, \.json, \.jsonl"):
        load_raw_datasets(train_file=str(path))


def test_unknown_task_is_rejected_listing_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="Unknown GLUE task 'glue2'.*cola, sst2, mrpc"):
        load_raw_datasets("glue2")
    with pytest.raises(ValueError, match="Unknown GLUE task 'glue2'.*cola, sst2, mrpc"):
        DataTrainingArguments(task_name="glue2")
    with pytest.raises(ValueError, match="Pass --task_name"):
        DataTrainingArguments()


def test_missing_columns_are_named_with_the_columns_found(tmp_path):
    path = write_rows(tmp_path / "train.tsv", [{"text_a": "x", "text_b": "y", "y": 1}])
    raw = load_raw_datasets(train_file=str(path))
    with pytest.raises(
        ValueError,
        match=r"train split lacks the columns 'sentence1', 'sentence2', 'label' "
        r"\(columns found: \['text_a', 'text_b', 'y'\]\)",
    ):
        check_columns(raw, resolve_text_columns(raw, "mrpc"), "label", ["train"])
    with pytest.raises(ValueError, match=r"lacks the column 'label' \(columns found"):
        check_columns(raw, ["text_a", "text_b"], "label", ["train"])
    check_columns(raw, ["text_a", "text_b"], "y", ["train"])  # passes
    with pytest.raises(
        ValueError, match=r"Cannot tell which columns hold the text; columns found: \['text_a', 'text_b', 'y'\]"
    ):
        resolve_text_columns(raw)
    with pytest.raises(ValueError, match="one or two column names, got 3"):
        resolve_text_columns(raw, text_columns=["a", "b", "c"])


def test_label_set_mismatch_between_train_and_validation(tmp_path):
    train = write_rows(tmp_path / "train.csv", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    dev = write_rows(tmp_path / "dev.csv", [{"text": "c", "label": "pos"}, {"text": "d", "label": "neutral"}])
    raw = load_raw_datasets(train_file=str(train), validation_file=str(dev))
    with pytest.raises(
        ValueError, match=r"Label set mismatch: the validation split has labels \['neutral'\].*\['neg', 'pos'\]"
    ):
        infer_labels(raw, None, "label", ["train", "validation"])


def test_glue_task_with_labels_that_are_not_its_classes(tmp_path):
    rows = pair_rows(4, seed=0, label_names=("entailment", "maybe"))
    raw = load_raw_datasets(train_file=str(write_rows(tmp_path / "train.tsv", rows)))
    with pytest.raises(ValueError, match=r"train split of mnli has labels \['maybe'\].*entailment"):
        infer_labels(raw, "mnli", "label", ["train"])


def test_offline_hub_gives_a_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match=r"Could not load GLUE task 'rte'.*pass local files.*--train_file"):
        load_raw_datasets("rte")


def test_run_glue_needs_the_split_each_stage_uses(tmp_path):
    train = write_rows(tmp_path / "train.tsv", sentiment_rows(4, seed=0))
    with pytest.raises(ValueError, match=r"--do_eval needs data to work on: pass --validation_file"):
        run_glue(
            ModelArguments(model_name_or_path=str(tmp_path / "no-model")),
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
        {
            "train": split([0, 1, 2, 0]),
            "validation_matched": split([2, 1]),
            "validation_mismatched": split([0]),
            "test_matched": split([-1, -1]),
            "test_mismatched": split([-1]),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or fake)
    raw = load_raw_datasets("mnli")
    assert calls == [("nyu-mll/glue", "mnli")]
    info = infer_labels(raw, "mnli", "label", ["train", *evaluation_splits(raw, "mnli")])
    assert info.label_list == ["entailment", "neutral", "contradiction"]
    assert [info.label_fn()(v) for v in raw["validation_matched"]["label"]] == [2, 1]
    assert example_ids(raw["test_matched"]) == [10, 11]


def test_glue_labels_accept_ids_names_and_leaderboard_spelling(tmp_path):
    rows = [{"sentence": "a", "label": 1}, {"sentence": "b", "label": 0}]
    raw = load_raw_datasets(train_file=str(write_rows(tmp_path / "cola.tsv", rows)))
    info = infer_labels(raw, "cola", "label", ["train"])
    assert info.label_list == ["unacceptable", "acceptable"]
    to_id = info.label_fn()
    assert [to_id(v) for v in (0, 1, "0", "1", "acceptable", "unacceptable")] == [0, 1, 0, 1, 1, 0]
    rows = pair_rows(6, seed=0, keys=("sentence1", "sentence2"), label_names=("not_entailment", "entailment"))
    raw = load_raw_datasets(train_file=str(write_rows(tmp_path / "rte.jsonl", rows)))
    to_id = infer_labels(raw, "rte", "label", ["train"]).label_fn()
    assert [to_id(v) for v in raw["train"]["label"]] == [1, 0, 1, 0, 1, 0]  # rte: entailment=0


def test_custom_string_labels_are_sorted_and_numbers_sorted_numerically(tmp_path):
    rows = pair_rows(9, seed=0, keys=("sentence1", "sentence2"), label_names=("pos", "neg", "neutral"))
    raw = load_raw_datasets(train_file=str(write_rows(tmp_path / "train.jsonl", rows)))
    info = infer_labels(raw, None, "label", ["train"])
    assert info.label_list == ["neg", "neutral", "pos"] and not info.is_regression
    assert [info.label_fn()(v) for v in raw["train"]["label"][:3]] == [2, 0, 1]
    rows = [{"text": str(i), "label": label} for i, label in enumerate([10, 2, 33, 2])]
    raw = load_raw_datasets(train_file=str(write_rows(tmp_path / "n.csv", rows)))
    info = infer_labels(raw, None, "label", ["train"])
    assert info.label_list == ["2", "10", "33"]
    assert [info.label_fn()(v) for v in raw["train"]["label"]] == [1, 0, 2, 0]


def test_regression_for_stsb_and_for_float_labels(tmp_path):
    rows = [{"sentence1": "a", "sentence2": "b", "label": s} for s in ("0.5", "3.25", "5.000", "2")]
    path = write_rows(tmp_path / "stsb.tsv", rows)
    raw = load_raw_datasets("stsb", train_file=str(path))
    info = infer_labels(raw, "stsb", "label", ["train"])
    assert info.is_regression and info.num_labels == 1
    assert [info.label_fn()(v) for v in raw["train"]["label"]] == [0.5, 3.25, 5.0, 2.0]
    assert infer_labels(raw, None, "label", ["train"]).is_regression  # custom data with float labels
    bad = write_rows(tmp_path / "bad.tsv", [{"sentence1": "a", "sentence2": "b", "label": "high"}])
    with pytest.raises(ValueError, match="stsb is a regression task but the train labels"):
        infer_labels(load_raw_datasets("stsb", train_file=str(bad)), "stsb", "label", ["train"])


def test_model_config_label_order_is_kept_when_it_names_the_same_classes():
    config = BertConfig(id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"})
    info = LabelInfo(["entailment", "neutral", "contradiction"])
    label2id = align_with_model_config(config, info, training=False, task_name="mnli")
    assert label2id == {"entailment": 2, "neutral": 1, "contradiction": 0}
    assert config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"} and config.finetuning_task == "mnli"
    other = BertConfig(id2label={0: "negative", 1: "positive"})
    with pytest.raises(
        ValueError, match=r"fine-tuned on classes \['negative', 'positive'\] but the data has \['no', 'yes'\]"
    ):
        align_with_model_config(other, LabelInfo(["no", "yes"]), training=False)
    assert align_with_model_config(other, LabelInfo(["no", "yes"]), training=True) == {"no": 0, "yes": 1}
    # Evaluating a 3-class model on a dev set that happens to hold two of its classes keeps all three ids.
    three = BertConfig(id2label={0: "neg", 1: "neutral", 2: "pos"})
    assert align_with_model_config(three, LabelInfo(["neg", "pos"]), training=False) == {
        "neg": 0,
        "neutral": 1,
        "pos": 2,
    }
    assert three.num_labels == 3
    with pytest.raises(ValueError, match="fine-tuned on classes"):  # a class the model never learnt
        align_with_model_config(
            BertConfig(id2label={0: "neg", 1: "pos"}), LabelInfo(["neg", "neutral", "pos"]), training=False
        )
    regression = BertConfig()
    assert align_with_model_config(regression, LabelInfo([], is_regression=True), training=True) == {}
    assert regression.num_labels == 1 and regression.problem_type == "regression"


# ----------------------------------------------------------------------------- tokenization and models


def test_tokenize_pairs_with_truncation_and_labels(tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    tokenizer = AutoTokenizer.from_pretrained(bert)
    rows = pair_rows(4, seed=0, keys=("sentence1", "sentence2"), label_names=("pos", "neg"))
    test_rows = [{k: v for k, v in r.items() if k != "label"} for r in rows]
    raw = load_raw_datasets(
        train_file=str(write_rows(tmp_path / "train.jsonl", rows)),
        test_file=str(write_rows(tmp_path / "test.jsonl", test_rows)),
    )
    info = infer_labels(raw, None, "label", ["train"])
    data = tokenize_datasets(
        raw,
        tokenizer,
        ("sentence1", "sentence2"),
        max_seq_length=6,
        label_column="label",
        label_fn=info.label_fn(),
        labelled_splits=["train"],
    )
    assert set(data["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert "labels" not in data["test"].column_names
    assert data["train"]["labels"] == [1, 0, 1, 0]  # neg=0, pos=1
    first = data["train"][0]["input_ids"]
    assert len(first) == 6 and first[0] == tokenizer.cls_token_id and first.count(tokenizer.sep_token_id) == 2
    full = tokenize_datasets(
        raw,
        tokenizer,
        ("sentence1", "sentence2"),
        max_seq_length=64,
        label_column="label",
        label_fn=info.label_fn(),
        labelled_splits=["train"],
    )
    assert len(full["train"][0]["input_ids"]) == 1 + 5 + 1 + 3 + 1  # [CLS] 5 words [SEP] 3 words [SEP]
    batch = DataCollatorWithPadding(tokenizer)([full["train"][0], data["train"][1]])
    assert batch["input_ids"].shape == (2, 11) and batch["labels"].tolist() == [1, 0]


def test_gpt2_tokenizer_without_pad_token_pads_with_eos(tmp_path):
    folder = save_tiny_gpt2(tmp_path / "gpt2")
    model, tokenizer, label2id = prepare_model_and_tokenizer(str(folder), LabelInfo(["a", "b", "c"]))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert model.config.pad_token_id == tokenizer.eos_token_id
    assert model.config.num_labels == 3 and label2id == {"a": 0, "b": 1, "c": 2}
    # A padded batch classifies each row exactly as when the row is alone (the last real token is pooled).
    model.eval()
    short, long = "the good film", "the movie was very bad and sad"
    batch = tokenizer([short, long], padding=True, return_tensors="pt")
    assert (batch["input_ids"][0] == tokenizer.pad_token_id).any()
    with torch.no_grad():
        together = model(**batch).logits
        alone = model(**tokenizer([short], return_tensors="pt")).logits
    np.testing.assert_allclose(together[0].numpy(), alone[0].numpy(), atol=1e-5)


def test_cli_parsing_text_columns_and_glue_defaults(tmp_path):
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, GlueTrainingArguments))
    model_args, data_args, args = parser.parse_args_into_dataclasses(
        args=[
            "--model_name_or_path",
            "m",
            "--train_file",
            "t.csv",
            "--text_columns",
            "q",
            "a",
            "--label_column",
            "y",
            "--output_dir",
            str(tmp_path),
            "--learning_rate",
            "4e-5",
            "--report_to",
            "none",
        ]
    )
    assert data_args.text_columns == ["q", "a"] and data_args.label_column == "y"
    assert args.swa and args.swa_start == 0.5 and args.to_swa_config().swa_lr == pytest.approx(2e-5)
    faster = dataclasses.replace(args, learning_rate=1e-4)  # the tail follows the peak LR
    assert faster.to_swa_config().swa_lr == pytest.approx(5e-5)
    explicit = dataclasses.replace(args, swa_lr=3e-6)
    assert explicit.to_swa_config().swa_lr == pytest.approx(3e-6)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": "m",
                "task_name": "SST-2",
                "output_dir": str(tmp_path),
                "swa_lr_ratio": 0,
                "report_to": "none",
            }
        )
    )
    _, data_args, args = parser.parse_json_file(json_file=str(config))
    assert data_args.task_name == "sst2" and args.to_swa_config().swa_lr is None
    with pytest.raises(ValueError, match="swa_lr_ratio must be in"):
        GlueTrainingArguments(output_dir=str(tmp_path), swa_lr_ratio=2.0, report_to="none")


def test_classification_head_of_another_size_needs_ignore_mismatched_sizes(tmp_path):
    folder = save_tiny_bert(tmp_path / "finetuned", num_labels=2, head=True)
    three = LabelInfo(["a", "b", "c"])
    with pytest.raises(
        ValueError, match=r"head whose size differs from the data's 3 output\(s\).*--ignore_mismatched_sizes"
    ):
        prepare_model_and_tokenizer(str(folder), three)
    model, _, _ = prepare_model_and_tokenizer(str(folder), three, ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 3


def test_a_stray_tab_in_a_tsv_row_is_an_error_naming_the_line(tmp_path):
    from hf_swa.glue.data import read_table

    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tlabel\nA plays\tguitar\tx\t1\nC\tD\t0\n")
    with pytest.raises(ValueError, match="line 2 has 4 tab-separated fields, the header has 3"):
        read_table(str(path))


def test_csv_labels_are_stripped(tmp_path):
    from hf_swa.glue.data import read_table

    path = tmp_path / "train.csv"
    path.write_text("sentence,label\na,pos\nb, neg\nc, pos\n")
    assert sorted(set(read_table(str(path))["label"])) == ["neg", "pos"]


def test_a_missing_label_is_an_error_naming_the_example(tmp_path):
    from hf_swa.glue.data import load_raw_datasets
    from hf_swa.glue.labels import infer_labels

    path = tmp_path / "train.jsonl"
    path.write_text('{"sentence": "a", "label": "pos"}\n{"sentence": "b"}\n{"sentence": "c", "label": "neg"}\n')
    raw = load_raw_datasets(None, train_file=str(path))
    with pytest.raises(ValueError, match="no label in column 'label' for example 1"):
        infer_labels(raw, None, "label", ["train"])
