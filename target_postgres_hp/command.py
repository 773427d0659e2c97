"""The `target-postgres-hp` command: the target's command line (`cli`, `target`), started and
ended with the least time around the load, which for the small runs most schedules make is
most of the run (docs/PERFORMANCE.md)."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys


def main() -> None:
    """Run the target's command line, then end the process.

    - Start: the cyclic garbage collector is off while the target's modules are imported
      (singer-sdk, SQLAlchemy, psycopg, click): they make many objects and no garbage, and
      the collector's passes over them cost about 10% of the import time.
    - End: once the exit handlers have run (the one of `keyfiles.KeyFiles` removes the run's
      key files) and the output is flushed, the process ends without tearing the interpreter
      down: freeing every module and object a load leaves, one by one, takes 0.1 to 0.3 s.
      Only a finished command ends this way (an exit status from the command line or a
      refusal); an unexpected error ends as Python ends, with its traceback.
    """
    gc.disable()
    try:
        from target_postgres_hp.target import TargetPostgresHP
    finally:
        gc.enable()
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
