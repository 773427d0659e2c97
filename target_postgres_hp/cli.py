"""The command line's two jobs beyond the SDK's: read the `--config` files (and, with `ENV`,
check the environment's setting names), and turn every refusal into one sentence on the log
and exit status 1, never a traceback (SPEC §2, §9)."""

from __future__ import annotations

import dataclasses
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
    RecordNotStored,
    TargetError,
    first_line,
)

if TYPE_CHECKING:
    from target_postgres_hp.target import TargetPostgresHP


@dataclasses.dataclass
class ConfigInput(_ConfigInput):
    """The merged config and the `--config` files it came from (which BATCH manifests may
    never name, `batchfiles.BatchFiles`)."""

    files: tuple[str, ...] = ()


def read_configs(logger: logging.Logger, ctx: click.Context, value: tuple[str, ...]) -> ConfigInput:
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
    files = tuple(path for path in value if path != "ENV")
    return ConfigInput(config=config, parse_env="ENV" in value, files=files)


def run(cls: type[TargetPostgresHP], config: _ConfigInput, file_input: Any) -> None:
    """Run the target; a refusal is logged as one sentence and exits 1, no traceback."""
    target: TargetPostgresHP | None = None
    try:
        target = cls(config=config.config, validate_config=True, parse_env_config=config.parse_env)
        if isinstance(config, ConfigInput):
            target.config_files = config.files
        _ = target.target_connector
        try:
            target.listen(file_input)
        except RecordNotStored as refusal:
            # Keep everything of the lines before the refused record, and its state.
            raise target.keep_before(refusal) from None
        except (BadInput, PermissionMissing):
            # Keep everything read before the bad line (or the SCHEMA of a stream whose
            # schema is refused), and the state that covers it.
            try:
                target.drain_all()
            except RecordNotStored as refusal:
                raise target.keep_before(refusal) from None
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


#: A server's own limits that still cut a statement short (SPEC §12), by SQLSTATE: what the
#: sentence names.
_LIMITS_HIT = {
    "55P03": (
        "a lock wait reached lock_wait_seconds (or the server's lock_timeout): end the"
        " session holding the lock or run again when it is done, or raise lock_wait_seconds"
    ),
    "57014": (
        "the server cancelled a statement (statement_timeout, or an administrator): raise the"
        " statement_timeout the provider sets for this role, or run again"
    ),
}


def database_refusal(error: psycopg.Error) -> str:
    """One sentence for a database error no step of the target turned into its own."""
    diag = error.diag
    hit = _LIMITS_HIT.get(diag.sqlstate or "")
    if hit is not None:
        return (
            f"The database stopped the load ({diag.message_primary or first_line(error)}):"
            f" {hit}. Every record before the last STATE this run emitted is committed"
        )
    reason = diag.message_primary or first_line(error)
    where = f" (table {diag.schema_name}.{diag.table_name})" if diag.table_name else ""
    state = f", SQLSTATE {diag.sqlstate}" if diag.sqlstate else ""
    return (
        f"The database refused the load{where}: {reason}{state}. Every record before the last"
        " STATE this run emitted is committed: fix the cause and run again from that state"
    )
