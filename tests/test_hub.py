"""Model cards and Hub pushes, tested up to the network boundary with a fake Hub on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import huggingface_hub
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from hf_swa import hub
from hf_swa.checkpointing.names import CONFIG_FILE

sys.path.insert(0, str(Path(__file__).parent))
from glue_fixtures import flags, save_tiny_bert, sentiment_rows, write_rows  # noqa: E402
from hub_server import FakeHub  # noqa: E402
from tiny_models import checkpoint_swa_average  # noqa: E402

HUB_1 = int(huggingface_hub.__version__.split(".")[0]) >= 1

REPO_ROOT = Path(__file__).resolve().parent.parent

SWA_CONFIG = {
    "swa_start": 0.75,
    "swa_start_step": 150,
    "swa_freq": 10,
    "swa_lr": 2e-05,
    "swa_anneal_steps": 0,
    "swa_anneal_strategy": "cos",
    "swa_device": None,
    "swa_strategy": "uniform",
    "n_averaged": 12,
    "n_skipped": 0,
    "hf_swa_version": "0.1.0",
}
# SWA better on accuracy, worse on F1: both must show in the card. As a plain SWATrainer writes them (flat keys) ...
FLAT_RESULTS = {
    "epoch": 3.0,
    "eval_accuracy": 0.8431372549,
    "eval_swa_accuracy": 0.8602941176,
    "eval_f1": 0.8913043478,
    "eval_swa_f1": 0.8881118881,
    "eval_loss": 0.41,
    "eval_swa_loss": 0.37,
    "eval_runtime": 1.5,
    "eval_samples_per_second": 272.0,
    "eval_samples": 408,
    "train_runtime": 123.4,
}
# ... and as run_glue writes them (results.json): per weights, per evaluation set, per metric, with the data set.
RESULTS = {
    "eval": {
        "live": {"validation": {"accuracy": 0.8431372549, "f1": 0.8913043478, "loss": 0.41}},
        "swa": {"validation": {"accuracy": 0.8602941176, "f1": 0.8881118881, "loss": 0.37}},
    },
    "metrics": ["f1", "accuracy"],
    "lower_is_better": ["loss"],
    "dataset": {"id": "nyu-mll/glue", "config": "mrpc", "name": "GLUE MRPC", "purpose": "paraphrase detection"},
    "train": {"train_runtime": 123.4},
}


def save_averaged_model(folder: Path, *, swa_config: dict | None = SWA_CONFIG, weights: bool = True) -> Path:
    """A tiny BERT classifier saved as save_model would, plus a hand-written swa_config.json."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    if not weights:
        (folder / "model.safetensors").unlink()
    if swa_config is not None:
        (folder / CONFIG_FILE).write_text(json.dumps(swa_config, indent=2))
    return folder


def hub_env(hub_url: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub_url,  # read when huggingface_hub is imported, hence the subprocess
        HF_TOKEN="dummy",
        HF_HOME=str(home),  # the client caches small registries there; keep them out of ~
        NO_PROXY="127.0.0.1,localhost",  # a CI proxy must not intercept the fake Hub
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    return env


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the push, end to end through the CLI -------------------------------------------------


def test_cli_pushes_averaged_model_card_and_config_byte_for_byte(tmp_path):
    model_dir = save_averaged_model(tmp_path / "sst2-swa")
    (model_dir / "checkpoint-5").mkdir()
    (model_dir / "checkpoint-5" / "optimizer.pt").write_bytes(b"not part of the model")
    (model_dir / "optimizer.pt").write_bytes(b"not part of the model")
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(RESULTS))

    with FakeHub() as fake:
        env = hub_env(fake.url, tmp_path / "hf_home")
        first = run_cli(
            flags(
                model_dir=model_dir,
                repo_id="me/tiny-swa",
                private=True,
                results_file=results_file,
                base_model="bert-base-uncased",
            ),
            env,
        )
        assert first.returncode == 0, first.stderr
        # Pushing again to the now existing repo works (create_repo answers 409, exist_ok).
        second = run_cli(
            ["--model_dir", str(model_dir), "--repo_id", "me/tiny-swa", "--no_card", "--commit_message", "again"],
            env,
        )
        assert second.returncode == 0, second.stderr

    assert fake.unhandled == [], [f"{r.method} {r.path}" for r in fake.unhandled]
    calls = fake.calls()
    for expected in (
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        "POST /api/models/me/tiny-swa/preupload/main",
        "POST /api/models/me/tiny-swa/commit/main",
    ):
        assert expected in calls
    creates = [r.json() for r in fake.requests if r.path == "/api/repos/create"]
    # huggingface_hub 1.x says "visibility", 0.x "private" (the oldest supported transformers, 4.x, needs hub 0.x)
    private = {"visibility": "private"} if HUB_1 else {"private": True}
    assert creates[0] == {"name": "tiny-swa", "organization": "me", **private, "type": "model"}
    assert all(r.headers["authorization"] == "Bearer dummy" for r in fake.requests if r.method == "POST")

    repo = fake.repos["me/tiny-swa"]
    assert [c["header"]["summary"] for c in repo.commits] == [
        "Upload SWA-averaged model (12 snapshots) with hf_swa",
        "again",
    ]
    pushed = fake.files("me/tiny-swa")
    assert set(pushed) == {"config.json", "model.safetensors", CONFIG_FILE, "README.md"}
    for name, content in pushed.items():
        assert content == (model_dir / name).read_bytes(), name

    # The card that arrived carries the SWA settings and a model-index of the averaged scores.
    card = ModelCard(pushed["README.md"].decode())
    assert card.data.base_model == "bert-base-uncased"
    assert card.data.datasets == ["nyu-mll/glue"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "accuracy": RESULTS["eval"]["swa"]["validation"]["accuracy"],
        "f1": RESULTS["eval"]["swa"]["validation"]["f1"],
    }
    assert {(r.dataset_type, r.dataset_config, r.dataset_split) for r in card.data.eval_results} == {
        ("nyu-mll/glue", "mrpc", "validation")
    }
    text = card.text
    for row in (
        "| Averaging starts (`swa_start`) | 75% of training (optimizer step 150) |",
        "| Snapshot every (`swa_freq`) | 10 optimizer steps |",
        "| Snapshots averaged (`n_averaged`) | 12 |",
        "| SWA learning rate (`swa_lr`) | 2e-05 |",
        "| accuracy | 0.8431 | 0.8603 | +0.0172 |",
        "| f1 | 0.8913 | 0.8881 | -0.0032 |",
    ):
        assert row in text
    assert 'AutoModelForSequenceClassification.from_pretrained("me/tiny-swa")' in text

    # What arrived is a loadable Transformers checkpoint equal to the local one.
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    for name, content in pushed.items():
        (downloaded / name).write_bytes(content)
    loaded = AutoModelForSequenceClassification.from_pretrained(downloaded).state_dict()
    original = AutoModelForSequenceClassification.from_pretrained(model_dir).state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


# -- failed pushes: one clear line, and the folder as it was -----------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _folder_state(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


_TOKEN_WORDS = ["HTTP 401", "--token", "HF_TOKEN"]


@pytest.mark.parametrize(
    "failure, own_readme, expected",
    [
        ("wrong_token", True, _TOKEN_WORDS),
        ("wrong_token", False, _TOKEN_WORDS),  # no README: the card is generated, and must not be left behind
        ("server_down", True, ["could not reach the Hub at http://127.0.0.1:", "HF_ENDPOINT"]),
        ("offline", True, ["HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE"]),
    ],
)
def test_failed_push_says_what_to_do_and_leaves_the_folder_as_it_was(tmp_path, failure, own_readme, expected):
    model_dir = save_averaged_model(tmp_path / "sst2-swa")
    if own_readme:
        (model_dir / "README.md").write_text("my own notes on this model\n")
    before = _folder_state(model_dir)
    with FakeHub(tokens=("the-right-token",)) as fake:
        url = f"http://127.0.0.1:{_free_port()}" if failure == "server_down" else fake.url
        env = hub_env(url, tmp_path / "hf_home")
        if failure == "offline":
            env["HF_HUB_OFFLINE"] = "1"
        if failure != "wrong_token":
            env["HF_TOKEN"] = "the-right-token"
        done = run_cli(["--model_dir", str(model_dir), "--repo_id", "me/tiny-swa"], env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith("hf-swa-push: error: "), line
    for words in [*expected, f"nothing in {model_dir} was changed"]:
        assert words in line, (words, line)
    assert _folder_state(model_dir) == before  # the user's README (or its absence) included
    assert fake.repos.get("me/tiny-swa") is None or fake.repos["me/tiny-swa"].commits == []


def test_push_keeps_the_folders_readme_unless_asked_to_replace_it(tmp_path):
    model_dir = save_averaged_model(tmp_path / "sst2-swa")
    (model_dir / "README.md").write_text("my own notes on this model\n")
    with FakeHub() as fake:
        env = hub_env(fake.url, tmp_path / "hf_home")
        kept = run_cli(["--model_dir", str(model_dir), "--repo_id", "me/kept", "--no_card"], env)
        replaced = run_cli(["--model_dir", str(model_dir), "--repo_id", "me/replaced"], env)
    assert kept.returncode == 0 and replaced.returncode == 0, kept.stderr + replaced.stderr
    assert fake.files("me/kept")["README.md"] == b"my own notes on this model\n"
    card = fake.files("me/replaced")["README.md"]
    assert b"| Snapshots averaged (`n_averaged`) | 12 |" in card
    assert (model_dir / "README.md").read_bytes() == card  # written once the Hub had it
    assert len(fake.repos["me/replaced"].commits) == 1  # weights and card in one commit


class OfflineHub:
    """An HfApi whose every call fails as with HF_HUB_OFFLINE=1 (in-process: the endpoint is read at import)."""

    endpoint = "https://huggingface.co"

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, *args, **kwargs):
        raise huggingface_hub.errors.OfflineModeIsEnabled("Cannot reach the Hub: offline mode is enabled.")


def test_run_glue_push_failure_is_one_line_and_says_how_to_push_later(tmp_path, monkeypatch, capsys):
    from hf_swa.glue import cli, run

    out = save_averaged_model(tmp_path / "sst2-swa")
    before = _folder_state(out)
    monkeypatch.setattr(hub.push, "HfApi", OfflineHub)
    monkeypatch.setattr(run, "run_glue", lambda *args: None)  # the run itself is tested elsewhere
    argv = flags(model_name_or_path="bert-base-uncased", task_name="sst2", output_dir=out, report_to="none")
    assert cli.main([*argv, "--push_to_hub", "--hub_model_id", "me/sst2-swa", "--use_cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert err.startswith("hf-swa-glue: error: HF_HUB_OFFLINE is set"), err
    assert err.endswith(f"push it later with: hf-swa-push --model_dir {out} --repo_id me/sst2-swa"), err
    assert _folder_state(out) == before


# -- refusals (no network is touched) --------------------------------------------------------


class NoNetwork:
    def __init__(self, *args, **kwargs):
        raise AssertionError("push_to_hub reached the network for a folder it should have refused")


def test_push_refuses_folder_without_swa_config(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.push, "HfApi", NoNetwork)
    folder = save_averaged_model(tmp_path / "plain", swa_config=None)
    with pytest.raises(FileNotFoundError, match="swa_config.json.*not an averaged model"):
        hub.push_to_hub(folder, "me/plain")
    assert not (folder / "README.md").exists()


def test_push_refuses_folder_without_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.push, "HfApi", NoNetwork)
    folder = save_averaged_model(tmp_path / "no-weights", weights=False)
    with pytest.raises(FileNotFoundError, match="no model weights"):
        hub.push_to_hub(folder, "me/no-weights")
    assert not (folder / "README.md").exists()


def test_cli_refusal_is_an_error_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import push_to_hub as cli

    monkeypatch.setattr(hub.push, "HfApi", NoNetwork)
    folder = save_averaged_model(tmp_path / "plain", swa_config=None)
    assert cli.main(["--model_dir", str(folder), "--repo_id", "me/plain"]) == 2
    assert CONFIG_FILE in capsys.readouterr().err
    assert not (folder / "README.md").exists()


def test_corrupt_swa_config_is_named(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="swa_config.json is not valid JSON"):
        hub.load_swa_config(tmp_path)


# -- the card ----------------------------------------------------------------------------------


def test_write_model_card_reads_folder_and_says_where_swa_did_worse(tmp_path):
    folder = save_averaged_model(tmp_path / "model")
    (folder / "all_results.json").write_text(json.dumps(FLAT_RESULTS))  # a plain SWATrainer's
    path = hub.write_model_card(folder, task_name="mrpc", dataset_id="nyu-mll/glue")
    assert path == folder / "README.md"
    card = ModelCard.load(path)
    text = card.text
    assert "worse on f1 (-0.0032)" in text
    assert "did **worse** than the live weights on: f1 (-0.0032)" in text
    assert "SWA does not always help" in text
    assert "| loss (lower is better) | 0.4100 | 0.3700 | -0.0400 |" in text
    assert "runtime" not in text.split("## Results")[1].split("## How to use")[0]  # bookkeeping keys
    assert "AutoTokenizer" not in text  # no tokenizer saved in this folder
    assert "| Training time | 123 s |" in text
    # Round trip of the metadata through huggingface_hub's own parser.
    assert card.data.to_dict()["model-index"][0]["name"] == "SWA-averaged model"


def test_card_without_results_or_dataset_has_no_model_index(tmp_path):
    card = hub.render_model_card({**SWA_CONFIG, "swa_lr": None, "swa_strategy": "ema", "swa_ema_decay": 0.99})
    assert "model-index" not in card.data.to_dict()
    assert "No evaluation results were provided" in card.text
    assert "| SWA learning rate (`swa_lr`) | none: the base schedule ran unchanged |" in card.text
    assert "| Averaging strategy | ema |" in card.text and "| EMA decay | 0.99 |" in card.text


def test_card_reads_the_settings_names_of_hf_swa_0_3():
    record = {k: v for k, v in SWA_CONFIG.items() if k != "swa_strategy"}
    card = hub.render_model_card({**record, "strategy": "ema", "ema_decay": 0.999})
    assert "| Averaging strategy | ema |" in card.text and "| EMA decay | 0.999 |" in card.text


def test_card_names_the_tail_of_swa_lr_ratio():
    card = hub.render_model_card({**SWA_CONFIG, "swa_lr": None, "swa_lr_ratio": 0.5})
    assert "| SWA learning rate (`swa_lr`) | 0.5 of the peak learning rate (`swa_lr_ratio`) |" in card.text
    card = hub.render_model_card({**SWA_CONFIG, "swa_lr": None, "swa_lr_ratio": 0.0})
    assert "| SWA learning rate (`swa_lr`) | none: the base schedule ran unchanged |" in card.text


# -- the template ships with the package -----------------------------------------------------


def test_pyproject_lists_every_subpackage_and_maps_model_cards():
    setuptools_cfg = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools_cfg["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO_ROOT).parts) for p in (REPO_ROOT / "hf_swa").rglob("__init__.py")}
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert setuptools_cfg["package-dir"]["hf_swa.model_cards"] == "model_cards"
    assert "*.md" in setuptools_cfg["package-data"]["hf_swa.model_cards"]
    assert (REPO_ROOT / "model_cards" / hub.TEMPLATE_NAME).is_file()


@pytest.mark.slow
def test_template_ships_in_a_non_editable_install(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "*.egg-info", "__pycache__", "outputs", ".venv", ".pytest_cache"
        ),
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            "-q",
            "--disable-pip-version-check",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "hf_swa" / "model_cards" / hub.TEMPLATE_NAME).is_file()
    probe = (
        "import hf_swa.hub as h, importlib.resources as r\n"
        "assert h.__file__.startswith(%r), h.__file__\n"
        "assert r.files('hf_swa.model_cards').joinpath(%r).is_file()\n"
        "print(h.render_model_card({'n_averaged': 3}).text)\n"
    ) % (str(target), hub.TEMPLATE_NAME)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "| Snapshots averaged (`n_averaged`) | 3 |" in out.stdout


@pytest.mark.slow
def test_run_glue_push_to_hub_pushes_the_shipped_model_once(tmp_path):
    from safetensors.torch import load_file

    model = save_tiny_bert(tmp_path / "bert")
    train = write_rows(tmp_path / "train.tsv", sentiment_rows(48, seed=0))
    dev = write_rows(tmp_path / "dev.tsv", sentiment_rows(16, seed=1))
    out = tmp_path / "sst2-swa"
    with FakeHub() as fake:
        env = hub_env(fake.url, tmp_path / "hf_home")
        done = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "scripts" / "run_glue.py"),
                *flags(
                    model_name_or_path=model,
                    task_name="sst2",
                    train_file=train,
                    validation_file=dev,
                    do_train=True,
                    do_eval=True,
                    output_dir=out,
                    max_steps=6,
                    per_device_train_batch_size=8,
                    learning_rate="5e-3",
                    save_strategy="steps",
                    save_steps=2,
                    report_to="none",
                    use_cpu=True,
                    push_to_hub=True,
                    hub_model_id="me/sst2-swa",
                    disable_tqdm="True",
                    swa_windows=1,  # every row trains (GLUE defaults), one window
                    swa_ship="swa",  # the average of every snapshot ships
                ),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    repo = fake.repos["me/sst2-swa"]
    assert len(repo.commits) == 1  # no checkpoint (live weights) was pushed during training
    pushed = fake.files("me/sst2-swa")
    assert {"config.json", "model.safetensors", CONFIG_FILE, "README.md"} <= set(pushed)
    assert not any(name.startswith("checkpoint-") for name in pushed)
    assert pushed["model.safetensors"] == (out / "model.safetensors").read_bytes()
    # What was pushed is the shipped weights: the average of steps 3-6 (GLUE default swa_start=0.5) in the SWA
    # state of the final checkpoint.
    results = json.loads((out / "results.json").read_text())
    record = json.loads(pushed[CONFIG_FILE])
    assert record["shipped"] == results["chosen"] == "swa" and "selection" not in record
    expected = checkpoint_swa_average(out / "checkpoint-6")
    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(expected[k], saved[k]) for k in checkpoint_swa_average(out / "checkpoint-6"))
    assert record["n_averaged"] == 4
    card = pushed["README.md"].decode()
    assert "| Snapshots averaged (`n_averaged`) | 4 |" in card
    words = "the equal-weight mean of the weights after 4 optimizer steps: every step from step 3 to step 6"
    assert record["shipped_weights"]["description"] == words and words in card
    assert "Averaged weights (this model)" in card
    assert f"{results['eval']['chosen']['validation']['accuracy']:.4f}" in card  # this run's shipped score
    assert ModelCard(card).data.datasets == ["nyu-mll/glue"]  # the data set run_glue named in results.json


def test_the_hubs_unfilled_template_beside_an_adapter_is_replaced_by_the_card(tmp_path):
    """PEFT's save_pretrained leaves huggingface_hub's model-card template as README.md: that is nobody's card."""
    model_dir = save_averaged_model(tmp_path / "sst2-swa")
    template = (Path(huggingface_hub.__file__).parent / "templates" / "modelcard_template.md").read_text()
    (model_dir / "README.md").write_text(template)
    code = f"from hf_swa.hub import push_to_hub; push_to_hub({str(model_dir)!r}, 'me/adapter')"  # the Python API
    with FakeHub() as fake:
        env = hub_env(fake.url, tmp_path / "hf")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    card = fake.files("me/adapter")["README.md"]
    assert b"| Snapshots averaged (`n_averaged`) | 12 |" in card and b"Provide a quick summary" not in card
