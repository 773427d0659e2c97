"""Check the examples and links of README.md and docs/*.md, so that the docs cannot rot.

Conventions the pages follow (docs/README of the checks, in short):

* A ```json block is a config of this target: it must parse and pass the target's config
  validation (`Settings.from_config`, which reads no file and opens no connection). JSON that
  is not a config goes in ```jsonl (Singer messages) or ```text blocks.
  `<!-- check: refused -->` on the line before a ```json block turns the rule around: the
  config must be refused, and a ```text block right after it (only blank lines between) must
  hold the refusal, line for line.
* A ```yaml block must parse; a loader named target-postgres-hp in it has its `config`
  validated as above.
* `<!-- check: run -->` on the line before a ```bash, ```sh or ```sql block runs it with
  `--run`. The runnable blocks of one page run in order, as one shell session would: in a
  throwaway directory holding a copy of demo/, variables exported by one block are seen by the
  next, and an ```sql block goes through `psql` with that session's environment.
  The target is the one installed next to this Python; every embedded server the page started
  is stopped afterwards.
* `<!-- check: run server -->` marks a block that needs a real server. It runs with
  `--run --server`, which reads the server from PGHOST, PGPORT, PGUSER, PGPASSWORD and
  PGDATABASE and gives them to those blocks only (the other blocks see no PG* variable).
* Every relative link and #anchor resolves inside the repository.
* In docs/troubleshooting.md, a list item that starts with a code span quotes a message: each
  of its fixed parts (between `<placeholders>` and inner `setting names`) must still be a
  string the target's code holds.
* docs/configuration.md holds the settings table of `target-postgres-hp --about --format
  markdown` between its `generated` markers; `--write-config-reference` rewrites it.

Usage:
    python scripts/check_docs.py                  # the checks that need no server
    python scripts/check_docs.py --run            # also the runnable blocks (embedded server)
    python scripts/check_docs.py --run --server   # also the blocks for a real server (PG* env)
    python scripts/check_docs.py --run --no-static  # only the runnable blocks
    python scripts/check_docs.py --write-config-reference
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PAGE = ROOT / "docs" / "configuration.md"
MESSAGES_PAGE = ROOT / "docs" / "troubleshooting.md"
PACKAGE = ROOT / "target_postgres_hp"
GENERATED_START = "<!-- generated: target-postgres-hp --about --format markdown -->"
GENERATED_END = "<!-- end generated -->"
SERVER_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
MARKER = re.compile(r"^<!--\s*check:\s*(?P<what>[a-z ]+?)\s*-->$")
MARKERS = {"run", "run server", "refused"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)")
SHELLS = {"bash", "sh", "shell", "console"}
BLOCK_TIMEOUT = 180


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    lang: str
    text: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line}"


def shown(page: Path) -> str:
    """A page's path as messages give it: relative to the repository when inside it."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def pages() -> list[Path]:
    """The pages checked: README.md and every docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the check marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        if not opened:
            index += 1
            continue
        fence = opened["fence"]
        previous = lines[index - 1].strip() if index else ""
        marked = MARKER.match(previous)
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end])
            end += 1
        found.append(
            Block(
                page=page,
                line=index + 1,
                lang=opened["lang"].lower(),
                text="\n".join(body) + "\n",
                marker=marked["what"] if marked else None,
            )
        )
        index = end + 1
    return found


def prose(page: Path, *, keep_code: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line outside fenced blocks, inline code removed unless
    `keep_code`."""
    fence: str | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened["fence"]
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        yield number, line if keep_code else re.sub(r"(`+)(?:(?!\1).)+\1", "", line)


# ----------------------------------------------------------------------------- configs


def config_problem(config: object) -> str | None:
    """Why the target refuses `config`, or None when it accepts it."""
    from target_postgres_hp.config import Settings
    from target_postgres_hp.errors import TargetError

    if not isinstance(config, dict):
        return "not a JSON object"
    try:
        Settings.from_config(config)
    except TargetError as error:
        return str(error)
    return None


def _loader_configs(document: object) -> Iterator[Mapping[str, Any]]:
    """The `config` of every target-postgres-hp loader in a meltano.yml-shaped document."""
    if not isinstance(document, dict):
        return
    plugins = document.get("plugins")
    loaders = plugins.get("loaders") if isinstance(plugins, dict) else None
    for loader in loaders or []:
        if isinstance(loader, dict) and loader.get("name") == "target-postgres-hp":
            config = loader.get("config")
            if isinstance(config, dict):
                yield config


def example_problems() -> list[str]:
    """Problems of the ```json and ```yaml examples and of the check markers."""
    problems: list[str] = []
    for page in pages():
        page_blocks = blocks(page)
        for position, block in enumerate(page_blocks):
            if block.marker is not None and block.marker not in MARKERS:
                problems.append(f"{block.where}: unknown marker `check: {block.marker}`")
            if block.marker in {"run", "run server"} and block.lang not in SHELLS | {"sql"}:
                problems.append(f"{block.where}: only bash, sh and sql blocks can run")
            if block.lang == "json":
                problems.extend(_json_problems(block, page_blocks[position + 1 :]))
            elif block.marker == "refused":
                problems.append(f"{block.where}: `check: refused` belongs before a json block")
            elif block.lang in {"yaml", "yml"}:
                try:
                    document = yaml.safe_load(block.text)
                except yaml.YAMLError as error:
                    problems.append(f"{block.where}: not YAML ({error})")
                    continue
                for config in _loader_configs(document):
                    if (problem := config_problem(config)) is not None:
                        problems.append(f"{block.where}: the loader config is refused: {problem}")
    return problems


def _json_problems(block: Block, following: list[Block]) -> list[str]:
    try:
        config = json.loads(block.text)
    except ValueError as error:
        return [f"{block.where}: not JSON ({error})"]
    problem = config_problem(config)
    if block.marker != "refused":
        return [] if problem is None else [f"{block.where}: the config is refused: {problem}"]
    if problem is None:
        return [f"{block.where}: marked `check: refused`, but the target accepts it"]
    shown = following[0] if following else None
    lines = block.page.read_text(encoding="utf-8").splitlines()
    end_of_block = block.line + block.text.count("\n")
    if shown is None or shown.lang != "text":
        return []
    between = lines[end_of_block + 1 : shown.line - 1]
    if any(line.strip() for line in between):
        return []
    missing = [line for line in shown.text.splitlines() if line and line not in problem]
    return [f"{shown.where}: the target does not say {line!r}" for line in missing]


# ----------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a page offers: its headings (GitHub numbers repeats) and explicit ids."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _headings_and_ids(page):
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        else:
            found.add(line)
    return found


def _headings_and_ids(page: Path) -> Iterator[tuple[int, str]]:
    for number, line in prose(page, keep_code=True):
        if re.match(r"^#{1,6} ", line):
            yield number, line
        for explicit in re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", line):
            yield number, explicit


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")


def link_problems() -> list[str]:
    """Relative links that lead nowhere, and anchors no heading defines."""
    problems: list[str] = []
    for page in pages():
        for number, line in prose(page):
            targets = LINK.findall(line) + REFERENCE.findall(line)
            for target in targets:
                problem = _link_problem(page, target)
                if problem:
                    problems.append(f"{shown(page)}:{number}: {target}: {problem}")
    return problems


def _link_problem(page: Path, target: str) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
        return None
    path_text, _, anchor = target.partition("#")
    linked = (page.parent / path_text).resolve() if path_text else page
    if not linked.is_relative_to(ROOT):
        return "points outside the repository"
    if not linked.exists():
        return "no such file"
    if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        return f"no heading makes the anchor #{anchor}"
    return None


# ----------------------------------------------------------------------------- messages


def _message_pieces() -> list[str]:
    """Every piece of literal text in the package's strings: constants, and the literal parts
    of f-strings (a formatted value splits them), whitespace collapsed."""
    pieces: list[str] = []
    for source in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces.append(" ".join(node.value.split()))
    return pieces


def _quoted_messages(page: Path) -> Iterator[tuple[int, str]]:
    """(line, phrase) of each list item of `page` that starts with a code span."""
    item: list[str] = []
    start = 0
    for number, line in [*prose(page, keep_code=True), (0, "")]:
        if item and (not line.startswith("  ") or not line.strip()):
            opened = re.match(r"^- (`+)(.+?)\1", " ".join(item))
            if opened:
                yield start, opened[2].strip()
            item = []
        if line.startswith("- "):
            item, start = [line], number
        elif item:
            item.append(line.strip())


def message_problems(page: Path = MESSAGES_PAGE, minimum: int = 8) -> list[str]:
    """Quoted messages of the troubleshooting page that the target no longer says."""
    pieces = _message_pieces()
    problems = []
    for number, phrase in _quoted_messages(page):
        segments = re.split(r"<[^>]*>|`[^`]*`", phrase)
        fixed = [part.strip(" `,.:;()'\"") for part in segments]
        checked = [part for part in fixed if len(part) >= minimum]
        if not checked:
            problems.append(f"{shown(page)}:{number}: {phrase!r} has no fixed part")
        for part in checked:
            if not any(part in piece for piece in pieces):
                problems.append(f"{shown(page)}:{number}: the target never says {part!r}")
    return problems


# ----------------------------------------------------------------------------- reference


def executable() -> str:
    """The target-postgres-hp installed next to this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("target-postgres-hp")
    if beside.exists():
        return str(beside)
    found = shutil.which("target-postgres-hp")
    if found is None:
        sys.exit("target-postgres-hp is not installed: pip install -e . first")
    return found


def about_settings_table() -> list[str]:
    """The settings table of `target-postgres-hp --about --format markdown`."""
    done = subprocess.run(
        [executable(), "--about", "--format", "markdown"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"target-postgres-hp --about failed: {done.stderr.strip()[-2000:]}")
    about = done.stdout.splitlines()
    start = next(i for i, line in enumerate(about) if line.startswith("| Setting | Required"))
    table = []
    for line in about[start:]:
        if not line.startswith("|"):
            break
        table.append(line.rstrip())
    return table


def _generated_region(text: str) -> tuple[int, int]:
    lines = text.splitlines()
    start = lines.index(GENERATED_START)
    return start, lines.index(GENERATED_END, start)


def reference_problems() -> list[str]:
    """Whether docs/configuration.md holds the current settings table."""
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    try:
        start, end = _generated_region(text)
    except ValueError:
        return [f"{CONFIG_PAGE.relative_to(ROOT)}: the generated markers are missing"]
    current = [line.rstrip() for line in text.splitlines()[start + 1 : end] if line.strip()]
    try:
        about = about_settings_table()
    except RuntimeError as error:
        return [str(error)]
    if current != about:
        return [
            f"{CONFIG_PAGE.relative_to(ROOT)}: the settings table is not what --about prints:"
            " run python scripts/check_docs.py --write-config-reference"
        ]
    return []


def write_reference() -> None:
    """Put the current --about settings table into docs/configuration.md."""
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    start, end = _generated_region(text)
    lines = text.splitlines()
    lines[start + 1 : end] = ["", *about_settings_table(), ""]
    CONFIG_PAGE.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- running


def _psql() -> str | None:
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pgserver
    except ImportError:
        return None
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.exists() else None


def _stop_embedded_servers(directory: Path) -> None:
    """Stop every server whose data directory lies under `directory` (they outlive a run)."""
    for pid_file in directory.rglob("postmaster.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)


def run_page(page: Path, page_blocks: list[Block], server: Mapping[str, str] | None) -> list[str]:
    """Run a page's runnable blocks in order in a throwaway directory; their problems."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PG", "TARGET_POSTGRES_HP_"))
    }
    base["PATH"] = os.pathsep.join([str(Path(executable()).parent), base.get("PATH", "")])
    work = Path(tempfile.mkdtemp(prefix="tph-docs-"))
    # The embedded server runs as its own user when this runs as root: let it in.
    work.chmod(0o755)
    shutil.copytree(ROOT / "demo", work / "demo")
    session = dict(base)
    problems: list[str] = []
    try:
        for block in page_blocks:
            env = {**session, **(server or {})} if block.marker == "run server" else session
            problem, after = _run_block(block, work, env)
            if problem:
                problems.append(problem)
                break
            if after is not None:
                # What the block exported carries on; the server's PG* variables do not.
                session = {k: v for k, v in after.items() if not (server and server.get(k) == v)}
    finally:
        _stop_embedded_servers(work)
        shutil.rmtree(work, ignore_errors=True)
    return problems


def _run_block(
    block: Block, work: Path, env: dict[str, str]
) -> tuple[str | None, dict[str, str] | None]:
    """Run one block; (problem or None, the environment it leaves for the next block)."""
    scratch = work / ".check"
    scratch.mkdir(exist_ok=True)
    if block.lang == "sql":
        psql = _psql()
        if psql is None:
            return f"{block.where}: psql is not installed", None
        (scratch / "block.sql").write_text(block.text, encoding="utf-8")
        command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(scratch / "block.sql")]
    else:
        (scratch / "block.sh").write_text(block.text, encoding="utf-8")
        script = f"set -euo pipefail\nsource {scratch / 'block.sh'}\nenv -0 > {scratch / 'env'}\n"
        command = ["bash", "-c", script]
    (scratch / "env").unlink(missing_ok=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{block.where}: still running after {BLOCK_TIMEOUT} s", None
    print(f"ran {block.where} ({block.lang}) in {time.monotonic() - started:.1f} s", flush=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-25:]
        shown = "\n    ".join(output)
        return f"{block.where}: exit code {done.returncode}:\n    {shown}", None
    if block.lang == "sql" or not (scratch / "env").exists():
        return None, None
    after = dict(
        entry.split("=", 1)
        for entry in (scratch / "env").read_text(encoding="utf-8").split("\0")
        if "=" in entry
    )
    for volatile in ("PWD", "OLDPWD", "SHLVL", "_"):
        after.pop(volatile, None)
    return None, after


def run_problems(*, with_server: bool) -> list[str]:
    """Run the runnable blocks of every page (and the server ones when `with_server`)."""
    server: dict[str, str] | None = None
    if with_server:
        missing = [name for name in SERVER_VARIABLES if not os.environ.get(name)]
        if missing:
            return [f"--server needs the server in {', '.join(missing)}"]
        server = {name: os.environ[name] for name in SERVER_VARIABLES}
    problems: list[str] = []
    for page in pages():
        wanted = {"run", "run server"} if with_server else {"run"}
        runnable = [block for block in blocks(page) if block.marker in wanted]
        if runnable:
            problems.extend(run_page(page, runnable, server))
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run the runnable blocks")
    parser.add_argument("--server", action="store_true", help="with --run: also server blocks")
    parser.add_argument(
        "--no-static", action="store_true", help="with --run: only run the runnable blocks"
    )
    parser.add_argument(
        "--write-config-reference",
        action="store_true",
        help="rewrite the generated settings table of docs/configuration.md and exit",
    )
    args = parser.parse_args()
    if args.write_config_reference:
        write_reference()
        return
    started = time.monotonic()
    problems: list[str] = []
    if not (args.run and args.no_static):
        problems += example_problems() + link_problems() + reference_problems()
        problems += message_problems()
    if args.run:
        problems += run_problems(with_server=args.server)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"check_docs: {len(problems)} problems in {time.monotonic() - started:.1f} s")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
