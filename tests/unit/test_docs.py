"""The docs cannot rot: scripts/check_docs.py's static checks pass on README.md and docs/*.md
(configs accepted, links resolving, quoted messages still said, the settings reference equal
to `--about`), and the checker itself catches each kind of mistake. The runnable examples run
in tests/integration/test_docs.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_docs.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_docs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = module
    spec.loader.exec_module(module)
    return module


check_docs = _load()


def test_configuration_reference_is_the_about_output() -> None:
    assert check_docs.reference_problems() == []


def test_config_and_yaml_examples_are_accepted() -> None:
    assert check_docs.example_problems() == []


def test_links_and_anchors_resolve() -> None:
    assert check_docs.link_problems() == []


def test_troubleshooting_quotes_only_messages_the_target_says() -> None:
    assert check_docs.message_problems() == []


def test_the_pages_have_runnable_examples() -> None:
    runnable = [
        block
        for page in check_docs.pages()
        for block in check_docs.blocks(page)
        if block.marker in {"run", "run server"}
    ]
    assert {block.page.name for block in runnable} >= {
        "README.md",
        "getting-started.md",
        "tables.md",
    }
    assert any(block.marker == "run server" for block in runnable)


# --------------------------------------------------------------------------- the checker


def _page(tmp_path: Path, text: str, name: str = "page.md") -> Path:
    page = tmp_path / name
    page.write_text(text, encoding="utf-8")
    return page


def test_a_refused_config_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _page(tmp_path, '```json\n{"hostname": "db.example.com"}\n```\n')
    monkeypatch.setattr(check_docs, "pages", lambda: [page])
    (problem,) = check_docs.example_problems()
    assert "is not a setting of this target" in problem


def test_a_refusal_example_must_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _page(
        tmp_path,
        "<!-- check: refused -->\n```json\n"
        '{"host": "db.example.com", "username": "loader", "port": 0}\n```\n\n'
        "```text\nSetting `port` is wrong.\n```\n"
        "<!-- check: refused -->\n```json\n{}\n```\n"
        "<!-- check: rnu -->\n```bash\ntrue\n```\n",
    )
    monkeypatch.setattr(check_docs, "pages", lambda: [page])
    problems = check_docs.example_problems()
    assert len(problems) == 3, problems
    assert "does not say 'Setting `port` is wrong.'" in problems[0]
    assert "the target accepts it" in problems[1]
    assert "unknown marker" in problems[2]


def test_a_loader_config_in_yaml_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = _page(
        tmp_path,
        "```yaml\nplugins:\n  loaders:\n  - name: target-postgres-hp\n"
        "    config:\n      load_method: sometimes\n```\n",
    )
    monkeypatch.setattr(check_docs, "pages", lambda: [page])
    (problem,) = check_docs.example_problems()
    assert "load_method" in problem


def test_broken_links_and_anchors_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = check_docs.ROOT / "docs"
    page = docs / "getting-started.md"
    assert check_docs._link_problem(page, "tables.md#types") is None
    assert check_docs._link_problem(page, "../README.md#two-commands") is None
    assert check_docs._link_problem(page, "tables.md#no-such-heading") is not None
    assert check_docs._link_problem(page, "no-such-page.md") == "no such file"
    assert check_docs._link_problem(page, "../../elsewhere.md") is not None
    assert check_docs._link_problem(page, "https://example.com/x") is None


def test_headings_become_github_anchors() -> None:
    assert check_docs.slug("`_airbyte_meta`") == "_airbyte_meta"
    assert check_docs.slug("2. Load into the embedded server") == "2-load-into-the-embedded-server"
    assert check_docs.slug("From MeltanoLabs target-postgres") == "from-meltanolabs-target-postgres"


def test_a_message_the_target_never_says_is_caught(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "- `Role <user> may not create tables in schema <schema>`: fine.\n"
        "- ``Setting `host` is empty``: fine.\n"
        "- `The target fell asleep while\n  loading <stream>`: not a message.\n",
    )
    problems = check_docs.message_problems(page)
    assert problems == [
        f"{page}:3: the target never says 'The target fell asleep while loading'",
    ]


def test_a_failing_runnable_block_is_caught(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "<!-- check: run -->\n```bash\nexport GREETING=hello\n```\n"
        '<!-- check: run -->\n```bash\ntest "$GREETING" = hello && test -f demo/users.singer\n'
        "echo failing on purpose; false\n```\n",
    )
    runnable = check_docs.blocks(page)
    (problem,) = check_docs.run_page(page, runnable, server=None)
    assert problem.startswith(f"{page}:6: exit code 1")
    assert "failing on purpose" in problem
