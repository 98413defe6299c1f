"""``run_all.py --only``: the re-run benchmarks' rows and notes replace theirs in RESULTS.md, and
every other row, note and hand-written section stays."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

BEFORE = """# Benchmark results

- machine: Linux x86_64, 2 cores
- date: 2026-11-23 13:34 UTC
- command: `make bench`

| benchmark | metric | measured | goal | verdict |
|---|---|---|---|---|
| `core_decode` | ratio to bare json.loads | 0.65 | >= 0.5 | met |
| `realm_streams` | tokens/s, 1 concurrent (realm / plain) | 1 / 2 = 0.5 | >= 0.5 | met |
| `realm_streams` | tokens/s, 10 concurrent (realm / plain) | 1 / 2 = 0.5 | >= 0.5 | met |
| `soak` | soak RSS drift (%) | 227.5 | <= 10 | **missed** |

## Notes

- `core_decode`: decoding notes
- `realm_streams`: old notes
- `soak`: soak notes

## Missed goals: what limits them

- **soak**: hand-written analysis.
"""

README = """# Project

<!-- bench:start -->
Measured with `make bench` (old).

| old table |
<!-- bench:end -->

After the table.
"""


@pytest.fixture
def run_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "RESULTS.md").write_text(BEFORE)
    (tmp_path / "README.md").write_text(README)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(module, "README", tmp_path / "README.md")
    return module


def result(name: str, *measured: str, notes: str | None = None) -> dict[str, Any]:
    return {"name": name, "notes": notes,
            "summary": [{"metric": f"m{i}", "measured": m, "goal": ">= 1", "met": True}
                        for i, m in enumerate(measured)]}


def test_only_replaces_its_rows_and_notes_and_keeps_the_rest(run_all: ModuleType) -> None:
    body, how = run_all.merge([result("realm_streams", "A", "B", "C", notes="new notes")], False,
                              "python benchmarks/run_all.py --only realm_streams")
    text = run_all.RESULTS.read_text()
    assert "| `realm_streams` | m0 | A | >= 1 | met |\n| `realm_streams` | m1 | B |" in text
    assert "1 / 2 = 0.5" not in text and "old notes" not in text
    assert "- `realm_streams`: new notes" in text
    for kept in ("| `core_decode` | ratio to bare json.loads | 0.65", "| `soak` | soak RSS drift",
                 "- `core_decode`: decoding notes", "- `soak`: soak notes",
                 "## Missed goals: what limits them", "- **soak**: hand-written analysis.",
                 "- command: `make bench`"):
        assert kept in text, kept
    lines = text.splitlines()
    assert lines.index("| `realm_streams` | m2 | C | >= 1 | met |") < lines.index(
        "| `soak` | soak RSS drift (%) | 227.5 | <= 10 | **missed** |")  # in place, in order
    assert "`realm_streams` re-run with `python benchmarks/run_all.py --only realm_streams`" in text
    assert body.splitlines()[0].startswith("| benchmark |") and body.count("\n") == 6
    assert how.startswith("`make bench`, `realm_streams` re-run with")

    run_all.update_readme(body, how)
    readme = run_all.README.read_text()
    assert f"Measured with {how} (" in readme and "| `soak` |" in readme
    assert "old table" not in readme and readme.endswith("After the table.\n")


def test_only_with_a_new_benchmark_appends_its_rows_and_a_second_run_keeps_one_stamp(
    run_all: ModuleType,
) -> None:
    run_all.merge([result("brand_new", "X")], False, "run_all.py --only brand_new")
    run_all.merge([result("brand_new", "Y")], True, "run_all.py --quick --only brand_new")
    lines = run_all.RESULTS.read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[-1] == "| `brand_new` | m0 | Y | >= 1 | met |" and len(table) == 7
    stamps = [line for line in lines if line.startswith("- updated: ")]
    assert len(stamps) == 1 and "(quick sizes)" in stamps[0]


def test_tables_of_hand_written_sections_stay_where_they_are_and_out_of_the_readme(run_all: ModuleType) -> None:
    section = "## A/B\n\n| path | A | B |\n|---|---|---|\n| `x` | 1 | 2 |\n"
    run_all.RESULTS.write_text(BEFORE + "\n" + section)
    body, how = run_all.merge([result("brand_new", "X")], False, "run_all.py --only brand_new")
    assert body.splitlines()[0].startswith("| benchmark |")
    assert body.splitlines()[-1] == "| `brand_new` | m0 | X | >= 1 | met |" and "| path |" not in body
    assert run_all.RESULTS.read_text().endswith(section)
    run_all.update_readme(body, how)
    assert "| `x` |" not in run_all.README.read_text()


def test_each_re_run_keeps_its_own_stamp_until_its_benchmarks_are_re_run_again(run_all: ModuleType) -> None:
    run_all.merge([result("soak", "1"), result("realm_streams", "2")], False, "run_all.py --only soak realm_streams")
    run_all.merge([result("core_decode", "3")], False, "run_all.py --only core_decode")
    body, how = run_all.merge([result("soak", "4")], False, "run_all.py --only soak")
    stamps = [line for line in run_all.RESULTS.read_text().splitlines() if line.startswith("- updated: ")]
    assert len(stamps) == 3
    assert stamps[0].endswith(", `soak` re-run with `run_all.py --only soak`")
    assert stamps[1].endswith(", `core_decode` re-run with `run_all.py --only core_decode`")
    assert stamps[2].endswith(", `realm_streams` re-run with `run_all.py --only soak realm_streams`")
    assert how == ("`make bench`; `soak`, `core_decode`, `realm_streams` re-run since "
                   "(when and how: the results' header)")
    assert "| `soak` | m0 | 4 |" in body and "| `core_decode` | m0 | 3 |" in body
