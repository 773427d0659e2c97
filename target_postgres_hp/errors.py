"""Every refusal the target can give a user, as one sentence naming what to change.

Callers catch these by meaning (configuration, connection, tunnel, permission). The CLI prints
`str(error)` on one line and exits 1, without a traceback: every message here is written for
the person running the pipeline, and none of them may contain a secret.
"""

from __future__ import annotations

from singer_sdk.exceptions import ConfigValidationError


class TargetError(Exception):
    """Base class of the errors a user sees as one sentence."""


class ConfigError(TargetError, ConfigValidationError):
    """One or more settings are wrong; each problem is one sentence in `problems`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
        # ConfigValidationError's own attributes, for callers that know only the SDK.
        self.errors = problems
        self.schema: dict[str, object] = {}

    def __str__(self) -> str:
        return "\n".join(self.problems)


class SettingError(TargetError):
    """One setting is wrong; the message is the sentence of `setting_problem`."""


class UrlParamsError(SettingError):
    """`jdbc_url_params` is malformed or names an unknown key."""


class KeyMaterialError(SettingError):
    """A certificate or key setting names a file that cannot be read."""


class ConnectError(TargetError):
    """The database could not be reached or refused the login."""


class ReadOnlyServer(ConnectError):
    """The server reached takes no writes: a hot standby, or a read-only role or database."""


class TunnelError(TargetError):
    """The SSH tunnel could not be opened."""


class TunnelAuthError(TunnelError):
    """The bastion refused the SSH user's key or password."""


class TunnelUnreachable(TunnelError):
    """The bastion's address did not answer."""


class TunnelKeyError(TunnelError):
    """The configured SSH private key could not be read."""


class TunnelHostKeyMismatch(TunnelError):
    """The bastion presented a host key other than the configured one."""


class PermissionMissing(TargetError):
    """The login role lacks a privilege the load needs."""


class EmbeddedServerError(TargetError):
    """The embedded PostgreSQL could not be started."""


def first_line(error: BaseException) -> str:
    """An error's first line: enough to tell the cause, no query text or context."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def setting_problem(setting: str, problem: str, fix: str) -> str:
    """Compose the one sentence reported for a wrong setting."""
    return f"Setting `{setting}` {problem}: {fix}."


class BadInput(TargetError):
    """A line of input the target cannot use; names the line and the problem."""

    def __init__(self, line_number: int, problem: str) -> None:
        super().__init__(f"Input line {line_number}: {problem}.")
        self.line_number = line_number


class RecordRefused(TargetError):
    """A record its stream's decoder refuses; the reader reports it as bad input on the
    record's line (`reader.LineReader.process_lines`)."""


class KeyMissing(RecordRefused):
    """A record lacks one of its stream's key properties."""


class KeyNotStorable(RecordRefused):
    """A record's key value cannot be stored exactly in its key column (SPEC §6.3)."""


class RecordNotStored(TargetError):
    """The database refused a record the target let through (a row or a key too big for the
    server, a value it cannot hold): the run keeps every record of the lines before the
    record's, and the state before it (SPEC §9)."""

    def __init__(self, stream: str, line_number: int, reason: str) -> None:
        super().__init__(
            f"Input line {line_number}: the database refused the record of stream {stream}"
            f" ({reason}); every record before that line is committed and the last STATE"
            " before it emitted: change that record, or the stream's schema, so that the"
            " database can hold it, and run again from that state."
        )
        self.stream = stream
        self.line_number = line_number


class StreamLocked(TargetError):
    """Another run is loading the same stream."""


class ConnectionLost(TargetError):
    """The database connection was lost and could not be restored within the retries."""


class DependentObjects(TargetError):
    """Objects the loading role cannot recreate depend on a column that must change."""


class DependentNotDroppable(DependentObjects):
    """A dependent object the loading role may not drop even with CASCADE: another role owns
    it (and its schema)."""

    def __init__(self, change: str, label: str, owner: str, user: str, grant: str) -> None:
        super().__init__(
            f"The target must {change}, but {label} depends on it and role {user} may not drop"
            f" it, not even with drop_cascade. Nothing was changed: its owner {owner} must drop"
            f" it, or make {user} a member of {owner} ({grant})."
        )


class LoadNotReplaced(TargetError):
    """A full refresh's rows could not replace the live table's."""


class InternalError(TargetError):
    """A state the target's own logic rules out: reaching it is a defect to report, with the
    message."""
