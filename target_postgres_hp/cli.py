"""The command line's jobs beyond the SDK's: read the `--config` files (and, with `ENV`, check
the environment's setting names), turn every refusal into one sentence on the log and exit
status 1, never a traceback (SPEC §2, §9), and end the process quickly (`main`)."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import click
import psycopg
from singer_sdk.plugin_base import _ConfigInput

from target_postgres_hp.config import read_config_file, unknown_environment_settings
from target_postgres_hp.errors import (
    BadInput,
    ConfigError,
    PermissionMissing,
    TargetError,
    first_line,
)

if TYPE_CHECKING:
    from target_postgres_hp.target import TargetPostgresHP


def read_configs(
    logger: logging.Logger, ctx: click.Context, value: tuple[str, ...]
) -> _ConfigInput:
    """Read the `--config` files; one that is not a config file ends the run with one
    sentence (SPEC §2)."""
    config: dict[str, Any] = {}
    for path in value:
        if path == "ENV":
            continue
        try:
            config |= read_config_file(path)
        except ConfigError as error:
            logger.error("%s", error)
            ctx.exit(1)
    if "ENV" in value:
        problems = unknown_environment_settings(os.environ)
        for problem in problems:
            logger.error("%s", problem)
        if problems:
            ctx.exit(1)
    return _ConfigInput(config=config, parse_env="ENV" in value)


def run(cls: type[TargetPostgresHP], config: _ConfigInput, file_input: Any) -> None:
    """Run the target; a refusal is logged as one sentence and exits 1, no traceback."""
    target: TargetPostgresHP | None = None
    try:
        target = cls(config=config.config, validate_config=True, parse_env_config=config.parse_env)
        _ = target.target_connector
        try:
            target.listen(file_input)
        except (BadInput, PermissionMissing):
            # Keep everything read before the bad line (or the SCHEMA of a stream whose
            # schema is refused), and the state that covers it.
            target.drain_all()
            raise
    except (TargetError, psycopg.Error) as error:
        # A statement the lock watch cancelled fails wherever it was; the watch says why.
        gave_up = target.lock_wait_refusal if target is not None else None
        if gave_up is not None:
            cls.logger.error("%s.", gave_up)
        elif isinstance(error, TargetError):
            for line in str(error).splitlines():
                cls.logger.error("%s", line)
        else:
            cls.logger.error("%s", database_refusal(error))
        sys.exit(1)
    finally:
        if target is not None:
            target.dispose()


def database_refusal(error: psycopg.Error) -> str:
    """One sentence for a database error no step of the target turned into its own."""
    diag = error.diag
    reason = diag.message_primary or first_line(error)
    where = f" (table {diag.schema_name}.{diag.table_name})" if diag.table_name else ""
    state = f", SQLSTATE {diag.sqlstate}" if diag.sqlstate else ""
    return (
        f"The database refused the load{where}: {reason}{state}. Every record before the last"
        " STATE this run emitted is committed: fix the cause and run again from that state"
    )


def main() -> None:
    """The `target-postgres-hp` command: the target's command line, then the end of the
    process once the exit handlers have run and the output is flushed, without tearing the
    interpreter down. Freeing every module and object a load leaves, one by one, takes 0.1
    to 0.3 s, as long as loading the records of a small run (docs/PERFORMANCE.md).

    Only a finished command ends this way (an exit status from the command line or a
    refusal); an unexpected error ends as Python ends, with its traceback. The exit
    handlers include the one that removes the run's key files (`keyfiles.KeyFiles`)."""
    # Imported here: the target's module imports this one.
    from target_postgres_hp.target import TargetPostgresHP

    try:
        TargetPostgresHP.cli()
    except SystemExit as finished:
        status = _exit_status(finished.code)
    else:
        status = 0
    atexit._run_exitfuncs()  # the handlers `os._exit` would skip
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the reader is gone: the exit status is all that is left to say
        status = status or 1
    os._exit(status)


def _exit_status(code: object) -> int:
    """The exit status `sys.exit(code)` gives: an int as it is, None 0, anything else 1
    (after printing it, as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1
