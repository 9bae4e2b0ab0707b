"""The docs name the settings that exist: every flag, every `SWAConfig` field, and which is which."""

import dataclasses
import pathlib
import re

from hf_swa import SWAConfig, SWATrainingArguments
from hf_swa.glue.arguments import DataTrainingArguments, GlueTrainingArguments

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def config_fields() -> list:
    return [f.name for f in dataclasses.fields(SWAConfig)]


def flag_of(field: str) -> str:
    """The `SWATrainingArguments` flag of an `SWAConfig` field: the field's own name."""
    return field


def test_every_config_field_has_its_flag_and_the_flag_reaches_the_field(tmp_path):
    assert all(field.startswith("swa_") for field in config_fields())
    flags = {f.name for f in dataclasses.fields(SWATrainingArguments)}
    assert set(config_fields()) <= flags
    args = SWATrainingArguments(str(tmp_path), use_cpu=True, report_to="none", swa_strategy="ema", swa_ema_decay=0.9)
    assert (args.to_swa_config().swa_strategy, args.to_swa_config().swa_ema_decay) == ("ema", 0.9)


def test_the_settings_in_full_name_each_flag_with_its_config_field():
    text = (DOCS / "semantics.md").read_text()
    section = text.split("## The settings in full", 1)[1].split("\n## ", 1)[0]
    bullets = {}
    for bullet in re.split(r"\n- ", section):
        match = re.match(r"\*\*`--(\w+)`", bullet.strip())
        if match:
            bullets[match.group(1)] = bullet
    for field in config_fields():
        flag = flag_of(field)
        assert flag in bullets, f"docs/semantics.md does not describe --{flag}"
        assert f"`{field}`" in bullets[flag], f"docs/semantics.md: --{flag} does not name its SWAConfig field {field}"


def test_docs_name_only_flags_and_config_fields_that_exist():
    flags = {
        f.name
        for cls in (SWATrainingArguments, GlueTrainingArguments, DataTrainingArguments)
        for f in dataclasses.fields(cls)
    }
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        for flag in re.findall(r"--(swa_\w+)", text):
            assert flag in flags, f"{path.name} names --{flag}, which no arguments class has"
        for call in re.findall(r"SWAConfig\(([^()]*)\)", text):
            for keyword in re.findall(r"(\w+)\s*=", call):
                assert keyword in config_fields(), f"{path.name}: SWAConfig({keyword}=...) is not a field"
