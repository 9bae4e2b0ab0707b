"""The engine's public seams: outside hf_swa/averaging nothing reaches into a WeightAverager's insides."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
# An averager's private names, or the stores it keeps behind its methods.
INSIDES = re.compile(r"\baverager\.(_[a-z]\w*|stores|power_emas|bema|reconstructed|weights\.\w+)\b")


def reaches_into_the_engine(folder: pathlib.Path) -> list:
    found = []
    for path in sorted(folder.rglob("*.py")):
        if "averaging" in path.relative_to(ROOT).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if INSIDES.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_room_outside_the_engine_uses_the_averagers_insides():
    assert reaches_into_the_engine(ROOT / "hf_swa") == []
    assert reaches_into_the_engine(ROOT / "benchmarks") == []


def test_the_check_finds_what_it_looks_for():
    assert INSIDES.search("last = averager.power_emas.last_step")
    assert INSIDES.search("averager._require_snapshot()")
    assert INSIDES.search("callback.averager.weights.staging")
    assert not INSIDES.search("averager.power_ema_records()")
    assert not INSIDES.search("averager.require_snapshot()")
