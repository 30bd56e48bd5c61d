"""tests/golden.py itself: a golden test can only pass against a file someone wrote on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

import golden
from golden import assert_golden


@pytest.fixture
def golden_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(golden, "GOLDEN", tmp_path)
    monkeypatch.delenv("BMO_UPDATE_GOLDEN", raising=False)
    monkeypatch.delenv("CI", raising=False)  # the same outside CI as in it
    return tmp_path


def test_a_missing_golden_file_fails_and_is_not_written(golden_dir: Path) -> None:
    with pytest.raises(AssertionError, match="missing; run the tests with BMO_UPDATE_GOLDEN=1"):
        assert_golden("new.json", {"a": 1})
    assert not (golden_dir / "new.json").exists()
    with pytest.raises(AssertionError, match="missing"):
        assert_golden("new.sse", "data: x\n\n")


def test_update_golden_writes_the_file_then_it_must_match(golden_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMO_UPDATE_GOLDEN", "1")
    assert_golden("new.json", {"b": 2, "a": 1, "created": 1712345678})
    assert (golden_dir / "new.json").read_text() == '{\n  "a": 1,\n  "b": 2,\n  "created": 0\n}\n'
    monkeypatch.delenv("BMO_UPDATE_GOLDEN")
    assert_golden("new.json", {"a": 1, "b": 2, "created": 99})  # volatile fields are normalised
    with pytest.raises(AssertionError, match="differs from its golden file"):
        assert_golden("new.json", {"a": 1, "b": 3})


def test_update_golden_must_be_exactly_1(golden_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMO_UPDATE_GOLDEN", "0")
    with pytest.raises(AssertionError, match="missing"):
        assert_golden("new.json", {"a": 1})
