"""The README keeps up with the code: every setting documented, every function described."""

from __future__ import annotations

from pathlib import Path

from shared.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in README]
    assert not missing, f"README's configuration table lacks {missing}"


def test_every_function_is_described() -> None:
    functions = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))
    assert len(functions) == 5
    assert all(f"`{name}`" in README for name in functions)


def test_the_two_commands_are_the_quick_start() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick_start and "make test" in quick_start
