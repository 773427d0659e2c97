"""The README's settings table is what `--about --format markdown` prints, row for row."""

from __future__ import annotations

from pathlib import Path

import pytest

from target_postgres_hp.target import TargetPostgresHP

README = Path(__file__).resolve().parents[2] / "README.md"


def settings_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Setting | Required"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line.rstrip())
    return table


def test_readme_settings_table_is_the_about_output(capsys: pytest.CaptureFixture[str]) -> None:
    TargetPostgresHP.print_about("markdown")
    about = settings_table(capsys.readouterr().out)
    assert len(about) > 40
    assert settings_table(README.read_text(encoding="utf-8")) == about, (
        "regenerate the README table with target-postgres-hp --about --format markdown"
    )
