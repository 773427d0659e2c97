"""The README keeps what CI and a newcomer depend on: the two commands, the install paths, and
a link to every page of docs/ (the settings table moved to docs/configuration.md, checked by
tests/unit/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_two_commands_are_there_as_ci_runs_them() -> None:
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert (ROOT / script).is_file()
        assert re.search(rf"^bash {re.escape(script)} ", README, re.MULTILINE), script
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_docs_page_is_linked() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", README))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), "pages the README does not link"


def test_install_paths_work_from_a_clone_and_the_dependency_notes_stay() -> None:
    assert "pipx install '.[embedded]'" in README
    assert "pip install -e '.[embedded]'" in README
    assert "**psycopg 3**" in README
