"""The command's end (`command.main`): the exit status `sys.exit` would give, the exit handlers
run and the output flushed before the process ends without tearing the interpreter down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from target_postgres_hp.command import _exit_status

MAIN = (
    "import atexit, sys\n"
    "marker = sys.argv.pop()\n"
    "atexit.register(lambda: open(marker, 'w').write('handlers ran'))\n"
    "from target_postgres_hp.command import main\n"
    "main()\n"
)


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (2, 2), (True, 1)])
def test_exit_status_is_that_of_sys_exit(code: object, status: int) -> None:
    assert _exit_status(code) == status


def test_exit_status_of_a_message_is_1_and_the_message_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _exit_status("stopped: no config") == 1
    assert capsys.readouterr().err == "stopped: no config\n"


def _command(
    tmp_path: Path, *arguments: str, **options: object
) -> subprocess.CompletedProcess[str]:
    marker = tmp_path / "marker"
    return subprocess.run(
        [sys.executable, "-c", MAIN, *arguments, str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_finished_command_runs_the_exit_handlers_and_flushes_its_output(
    tmp_path: Path,
) -> None:
    done = _command(tmp_path, "--about", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "target-postgres-hp"
    assert (tmp_path / "marker").read_text() == "handlers ran"


def test_a_refused_command_keeps_its_status(tmp_path: Path) -> None:
    done = _command(tmp_path, "--no-such-option")
    assert done.returncode == 2
    assert "No such option" in done.stderr
    assert (tmp_path / "marker").read_text() == "handlers ran"


def test_output_nobody_reads_ends_with_status_1(tmp_path: Path) -> None:
    """stdout closed by its reader before the command's last output is flushed: the flush
    fails, and the status says the output was not delivered (the handlers still ran)."""
    marker = tmp_path / "marker"
    unflushed = (
        "import sys\n"
        "from target_postgres_hp.target import TargetPostgresHP\n"
        "TargetPostgresHP.cli = lambda: sys.stdout.write('{}')\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", unflushed + MAIN, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        # Buffered output, as a pipe has it unless PYTHONUNBUFFERED says otherwise.
        env={name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"},
    ) as process:
        assert process.stdout is not None
        process.stdout.close()
        status = process.wait(timeout=60)
    assert status == 1
    assert marker.read_text() == "handlers ran"
