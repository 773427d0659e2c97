"""How the target reaches PostgreSQL: embedded server or host, SSH tunnel, TLS files, libpq
parameters, session settings, and the privilege check made before any input is read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
import psycopg
from psycopg import sql as pgsql
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus

from target_postgres_hp import embedded, sql
from target_postgres_hp.config import Settings
from target_postgres_hp.errors import (
    ConnectError,
    KeyMaterialError,
    PermissionMissing,
    ReadOnlyServer,
    TargetError,
    first_line,
)
from target_postgres_hp.keyfiles import KeyFiles
from target_postgres_hp.naming import SOURCE_NAMESPACE, final_identifier, raw_identifier
from target_postgres_hp.records import JsonTextDumper

if TYPE_CHECKING:
    # Imported when a tunnel is opened: paramiko takes 70 ms to import, a tenth of the start.
    from target_postgres_hp.tunnel import Endpoint, Tunnel

logger = logging.getLogger("target-postgres-hp.connection")

APPLICATION_NAME = "target-postgres-hp"

#: TCP keepalives for long loads: an idle connection behind NAT or a firewall stays known.
_KEEPALIVES = {"keepalives_idle": "60", "keepalives_interval": "10", "keepalives_count": "6"}


#: SQLSTATEs of a server ending the session (administrator command, crash, shutdown; an
#: idle-session or idle-in-transaction timeout a DBA set).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03"})

#: What a pooler in statement mode answers a transaction of more than one statement.
_STATEMENT_POOLING = "statement pooling mode"


def connection_lost(error: psycopg.Error) -> bool:
    """Whether an error means the connection is gone, so the step may succeed on a new one
    (SPEC §9), rather than that the server refused the statement."""
    state = error.sqlstate
    if state is None:
        return isinstance(error, psycopg.OperationalError)
    return state.startswith("08") or state in _SESSION_ENDED


@dataclass(frozen=True)
class ServerAddress:
    """Who connects where, for messages (never holds a secret)."""

    user: str
    host: str
    #: One port, or one per host of a host list.
    port: str
    database: str

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def libpq_params(
    settings: Settings, endpoint: Endpoint | None, keyfiles: KeyFiles
) -> dict[str, str]:
    """The libpq connection parameters for `settings`, reaching the server at `endpoint`
    (the tunnel's local end) when one is given."""
    params: dict[str, str] = {"application_name": APPLICATION_NAME}
    params.update(_KEEPALIVES)
    for key, value in settings.url_params.libpq.items():
        params[key] = value
    if params.get("keepalives") == "0":
        for key in _KEEPALIVES:
            params.pop(key)
    host = settings.host or ""
    if endpoint is not None:
        # host stays the configured name so verify-full checks the certificate against it.
        params.update(host=host, hostaddr=endpoint.host, port=str(endpoint.port))
    else:
        params.update(host=host, port=str(settings.port))
    params["user"] = settings.username or ""
    params["dbname"] = settings.database or settings.username or ""
    if settings.password is not None:
        params["password"] = settings.password
    params.update(_tls_params(settings, keyfiles, params))
    return params


def _tls_params(settings: Settings, keyfiles: KeyFiles, given: dict[str, str]) -> dict[str, str]:
    ssl = settings.ssl
    tls: dict[str, str] = {"sslmode": str(ssl.mode)}
    material = (
        ("sslrootcert", "ssl_mode.ca_certificate", ssl.ca_certificate, "root.crt", False),
        ("sslcert", "ssl_mode.client_certificate", ssl.client_certificate, "client.crt", False),
        ("sslkey", "ssl_mode.client_key", ssl.client_key, "client.key", True),
    )
    for libpq_key, setting, value, file_name, private in material:
        if value is None:
            continue
        if libpq_key in given:
            logger.warning("jdbc_url_params sets %s, which %s overwrites", libpq_key, setting)
        try:
            tls[libpq_key] = str(keyfiles.as_file(setting, value, file_name, private=private))
        except KeyMaterialError as error:
            raise ConnectError(str(error)) from None
    if ssl.client_key_password is not None:
        tls["sslpassword"] = ssl.client_key_password
    return tls


_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    (
        "server does not support ssl",
        "the server does not support SSL, but ssl_mode.mode is {mode}: enable SSL on the "
        "server, or (only through tunnel_method or to a loopback host) use prefer or disable",
    ),
    (
        "does not match host name",
        "the server's certificate does not name the host {host}: connect with the host name "
        "the certificate was issued for, or use ssl_mode.mode verify-ca",
    ),
    (
        "certificate verify failed",
        "the server's certificate is not signed by ssl_mode.ca_certificate: give the CA "
        "certificate that issued the server's certificate",
    ),
    (
        "password authentication failed",
        "the server refused the password of user {user}: check username and password",
    ),
    (
        "no password supplied",
        "the server asks for a password: set password",
    ),
    (
        "connection requires a valid client certificate",
        "the server requires a client certificate: set ssl_mode.client_certificate and "
        "ssl_mode.client_key",
    ),
    (
        "certificate authentication failed",
        "the server refused the client certificate for user {user}: the certificate's "
        "common name must be the user name",
    ),
    (
        "no pg_hba.conf entry",
        "the server's pg_hba.conf does not allow user {user} from this address with this "
        "ssl_mode: ask the server's administrator to allow it",
    ),
    (
        "does not exist",
        "{detail}: check database and username",
    ),
    (
        "connection refused",
        "nothing listens at {host}:{port}: check host and port, and that the server runs",
    ),
    (
        "timeout expired",
        "the server did not answer within connectTimeout: check host and port, the network "
        "path, or raise connectTimeout in jdbc_url_params",
    ),
    (
        "could not translate host name",
        "the host name {host} is unknown: check host",
    ),
    (
        "bad decrypt",
        "ssl_mode.client_key could not be decrypted: check ssl_mode.client_key_password",
    ),
    (
        "could not load private key",
        "ssl_mode.client_key could not be loaded: give the key in PEM format and, if it is "
        "encrypted, its ssl_mode.client_key_password",
    ),
)


def explain_connect_error(error: psycopg.Error, target: ServerAddress, settings: Settings) -> str:
    """One sentence saying why the connection failed and what to change."""
    detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    detail = detail.removeprefix("FATAL:").strip()
    lowered = str(error).lower()
    for marker, template in _EXPLANATIONS:
        if marker in lowered:
            reason = template.format(
                mode=settings.ssl.mode,
                host=target.host,
                port=target.port,
                user=target.user,
                detail=detail,
            )
            return f"Could not connect to {target}: {reason}."
    return f"Could not connect to {target}: {detail}."


class PgSession(psycopg.Connection[tuple[Any, ...]]):
    """A connection whose every transaction starts with `transaction_setup`, when there is
    one: the settings a pooler in transaction mode does not carry from one transaction to the
    next (search_path), the target's own values of the limits a DBA set on the role, and,
    through a pooler, which backend the transaction runs on (SPEC §12). psycopg starts a
    transaction itself before a statement that needs one; this runs one more statement right
    after its BEGIN, so every way into a transaction (execute, COPY, a savepoint) gets it."""

    transaction_setup: bytes = b""
    #: Through a pooler: the setup's first column is the backend's pid, kept here for the
    #: lock watch (the pid libpq knows is the pooler's).
    pooled = False
    server_pid: int | None = None

    def _start_query(self) -> PQGen[None]:
        starting = not self.autocommit and self.pgconn.transaction_status == TransactionStatus.IDLE
        yield from super()._start_query()
        if starting and self.transaction_setup:
            result = yield from self._exec_command(self.transaction_setup)
            if self.pooled and result is not None:
                pid = result.get_value(0, 0)
                self.server_pid = int(pid) if pid is not None else None

    @property
    def backend_in_transaction(self) -> int | None:
        """The backend this connection's open transaction runs on, or None outside one."""
        if self.closed or self.pgconn.transaction_status == TransactionStatus.IDLE:
            return None
        return self.server_pid if self.pooled else self.info.backend_pid


#: The limits a DBA or provider may set on the role or the database (SPEC §12), and the value
#: the target's own transactions take when one is set: its statements are bounded by design
#: (a COPY lasts at most `batch_wait_limit_seconds` of waiting for input; lock waits end
#: after `lock_wait_seconds`), and a statement cut short by such a limit fails a run that
#: would succeed without it.
_OWN_LIMITS = ("statement_timeout", "idle_in_transaction_session_timeout", "lock_timeout")
#: A limit on sessions idle outside a transaction (PostgreSQL 14+): the run's connections wait
#: in its pool between batches, and the stream locks' session holds its locks idle. Straight
#: to the server the target's sessions run without it; through a pooler the pooler's server
#: connections are what it ends, and the pooler opens new ones.
_SESSION_LIMIT = "idle_session_timeout"


@dataclass(frozen=True)
class ServerSession:
    """What the first connection of the run found out about the server (SPEC §12)."""

    #: A pooler sits between the target and the server: the pid libpq was told is not the
    #: backend's. Session state then may not last from one transaction to the next.
    pooled: bool
    #: The host and port libpq chose (of a host list, the one it connected to).
    where: str
    in_recovery: bool
    read_only: bool
    #: The values the role, the database or the server's configuration give the limits in
    #: `_OWN_LIMITS` ("0" when not set, or set by the connection's own options).
    limits: dict[str, str]


class Database:
    """Everything one run needs to open connections, from start to cleanup."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyfiles = KeyFiles()
        self._tunnel: Tunnel | None = None
        self._params: dict[str, str] | None = None
        self._server: embedded.EmbeddedServer | None = None
        self.address: ServerAddress | None = None
        #: Found on the first connection; with it, the statement each transaction starts with.
        self.session: ServerSession | None = None
        self._transaction_setup = b""

    @property
    def search_path(self) -> tuple[str, ...]:
        """The configured schemas, in order."""
        return self.settings.schemas

    @property
    def raw_schema(self) -> str:
        """Schema of the raw tables, in raw-style spelling."""
        return raw_identifier(self.settings.raw_data_schema)

    def open(self) -> None:
        """Start the embedded server or the tunnel, and settle the connection parameters."""
        if self._params is not None:
            return
        settings = self.settings
        try:
            if settings.embedded:
                self._params = self._embedded_params()
            else:
                endpoint = None
                if settings.tunnel.enabled:
                    from target_postgres_hp.tunnel import Endpoint, Tunnel

                    self._tunnel = Tunnel(
                        settings.tunnel,
                        Endpoint(host=settings.host or "", port=int(settings.port)),
                        self.keyfiles,
                    )
                    endpoint = self._tunnel.open()
                self._params = libpq_params(settings, endpoint, self.keyfiles)
                self.address = ServerAddress(
                    user=self._params["user"],
                    host=settings.host or "",
                    port=settings.port,
                    database=self._params["dbname"],
                )
        except BaseException:
            self.close()
            raise

    def _embedded_params(self) -> dict[str, str]:
        server = embedded.start(self.settings.embedded_data_directory)
        self._server = server
        database = self.settings.database or embedded.SUPERUSER
        embedded.ensure_database(server, database)
        self.address = ServerAddress(
            user=embedded.SUPERUSER, host=server.socket_directory, port="5432", database=database
        )
        return {
            "host": server.socket_directory,
            "user": embedded.SUPERUSER,
            "dbname": database,
            "application_name": APPLICATION_NAME,
        }

    def connect(self) -> PgSession:
        """A new connection with the session settings applied (UTC, ISO, search_path)."""
        self.open()
        assert self._params is not None
        assert self.address is not None
        try:
            # No server-side prepared statements: a pooler in transaction mode hands the
            # next transaction to another server connection, where they do not exist.
            conn = PgSession.connect(
                psycopg.conninfo.make_conninfo("", **self._params), prepare_threshold=None
            )
        except psycopg.Error as error:
            raise ConnectError(explain_connect_error(error, self.address, self.settings)) from None
        try:
            conn.adapters.register_dumper(msgspec.Raw, JsonTextDumper)
            conn.execute(sql.session_setup(self.search_path))
            if self.session is None:
                self.session = self._server_session(conn)
                self._transaction_setup = self._setup_for(self.session)
            if not self.session.pooled and self.session.limits[_SESSION_LIMIT] != "0":
                conn.execute(sql.set_session(_SESSION_LIMIT, "0"))
            conn.commit()
        except psycopg.Error as error:
            conn.close()
            if _STATEMENT_POOLING in str(error):
                raise ConnectError(self._statement_pooling()) from None
            detail = error.diag.message_primary or first_line(error)
            raise ConnectError(
                f"Could not set up a session on {self.address}: {detail}"
                + (
                    " (a statement_timeout given in jdbc_url_params options applies to every"
                    " statement: raise it or remove it)"
                    if error.sqlstate == "57014"
                    else ""
                )
            ) from None
        conn.transaction_setup = self._transaction_setup
        conn.pooled = self.session.pooled
        return conn

    def _server_session(self, conn: psycopg.Connection[tuple[object, ...]]) -> ServerSession:
        row = conn.execute(sql.SERVER_SESSION).fetchone()
        assert row is not None  # one row, always
        pid, in_recovery, read_only = row
        limits = dict.fromkeys((*_OWN_LIMITS, _SESSION_LIMIT), "0")
        for name, value, source in conn.execute(sql.SETTING_SOURCES, (list(limits),)):
            # A limit the connection's own options set (jdbc_url_params) is the user's choice.
            if source != "client":
                limits[str(name)] = str(value)
        return ServerSession(
            pooled=pid != conn.info.backend_pid,
            where=f"{conn.info.host}:{conn.info.port}",
            in_recovery=bool(in_recovery),
            read_only=read_only == "on",
            limits=limits,
        )

    def _setup_for(self, session: ServerSession) -> bytes:
        """The statement every transaction starts with: the search_path when a pooler may
        have lost it, and the target's own values of the limits the role sets (logged once)."""
        settings: list[tuple[str, str]] = []
        if session.pooled:
            path = pgsql.SQL(", ").join(pgsql.Identifier(name) for name in self.search_path)
            settings.append(("search_path", path.as_string(None)))
        changed = []
        if not session.pooled and session.limits[_SESSION_LIMIT] != "0":
            changed.append(f"{_SESSION_LIMIT} {session.limits[_SESSION_LIMIT]}")
        for name in _OWN_LIMITS:
            value = session.limits[name]
            if value != "0":
                settings.append((name, "0"))
                changed.append(f"{name} {value}")
        if session.pooled and session.limits["lock_timeout"] == "0":
            # Should the lock watch miss a wait (a pooler's backend changes between two of
            # its looks), the server itself ends it, a little after lock_wait_seconds.
            bound = (max(self.settings.lock_wait_seconds, 1) + 3) * 1000
            settings.append(("lock_timeout", str(bound)))
        if changed:
            logger.info(
                "The server sets %s for this role or database; the target's own transactions"
                " run without them (their statements are bounded by batch_wait_limit_seconds"
                " and lock_wait_seconds)",
                ", ".join(changed),
            )
        if session.pooled:
            logger.info(
                "Connected through a connection pooler: every transaction sets its own"
                " search_path and limits; no server-side prepared statement or session"
                " state is used"
            )
        if not (settings or session.pooled):
            return b""
        return sql.transaction_settings(settings, with_pid=session.pooled).as_bytes(None)

    def _statement_pooling(self) -> str:
        return (
            f"Could not load through {self.address}: it is a connection pooler in statement"
            " mode, which allows one statement per transaction, and the target needs"
            " transactions of several statements (COPY, merges, swaps): connect to the"
            " pooler's session or transaction mode port, or straight to the server"
        )

    def check_writable(self) -> None:
        """Refuse, before any input is read, a server that takes no writes (SPEC §12)."""
        session = self.session
        if session is None or not (session.in_recovery or session.read_only):
            return
        if session.in_recovery:
            why = "is a hot standby (read-only, in recovery)"
        else:
            why = "takes no writes for this role (default_transaction_read_only is on)"
        raise ReadOnlyServer(
            f"The server at {session.where} {why}: connect to the primary, or list every host in"
            " host and add targetServerType=primary to jdbc_url_params so the writable one"
            " is chosen"
        )

    def describe_embedded(self) -> str | None:
        """How to reach the embedded server, when one is used."""
        if self._server is None or self.address is None:
            return None
        return embedded.describe(self._server, self.address.database)

    def check_privileges(self, conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
        """Stop before any input is read if the role cannot create what the load needs in the
        configured schemas (SPEC §3.4); return the schemas checked."""
        settings = self.settings
        schemas = [
            (
                self.raw_schema,
                "or set the raw_data_schema setting to a schema the target can create itself",
            )
        ]
        if settings.final_tables:
            avoid = "or set the schema setting to a schema the target can create itself"
            schemas.insert(0, (final_identifier(settings.default_schema), avoid))
            fixed = settings.namespace_format
            if settings.namespace_definition == "custom" and SOURCE_NAMESPACE not in fixed:
                avoid = (
                    "or set the namespace_format setting to a schema the target can create itself"
                )
                schemas.insert(1, (final_identifier(fixed), avoid))
        for schema, avoid in schemas:
            grants = check_schema(conn, schema, avoid)
            if not grants.temporary:
                raise PermissionMissing(
                    f"Role {grants.user} may not create temporary tables in database"
                    f" {grants.database}: run GRANT TEMPORARY ON DATABASE"
                    f" {_quoted(grants.database)} TO {_quoted(grants.user)};"
                )
        conn.rollback()
        return [schema for schema, _ in schemas]

    def close(self) -> None:
        """Close the tunnel and remove key material; safe to call more than once."""
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None
        self.keyfiles.close()
        self._params = None


def _quoted(name: str) -> str:
    return pgsql.Identifier(name).as_string(None)


class DatabaseGrants(NamedTuple):
    """The loading role (`current_user`), its database, and whether it may create temporary
    tables there."""

    user: str
    database: str
    temporary: bool


def check_schema(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    avoid: str,
    *,
    avoid_missing: str | None = None,
) -> DatabaseGrants:
    """Refuse, before any table of `schema` is created, a schema the role can neither create
    nor create tables in: the message gives the GRANT that fixes it and, in `avoid` (and
    `avoid_missing` when the schema does not exist), the settings that choose another schema
    (SPEC §3.4, §6.4). Return what the same query reads of the role's database privileges."""
    row = conn.execute(sql.SCHEMA_PRIVILEGES, (schema,)).fetchone()
    assert row is not None  # the query always returns one row
    exists, can_create, can_use, db_create, db_temp, user, database = row
    if exists and not (can_create and can_use):
        why = (
            " (on PostgreSQL 15 and later ordinary roles may not create tables in public)"
            if schema == "public"
            else ""
        )
        raise PermissionMissing(
            f"Role {user} may not create tables in schema {schema}{why}: run GRANT USAGE, "
            f"CREATE ON SCHEMA {_quoted(schema)} TO {_quoted(str(user))}; {avoid}."
        )
    if not exists and not db_create:
        raise PermissionMissing(
            f"Role {user} may not create schema {schema} in database {database}: run GRANT "
            f"CREATE, TEMPORARY ON DATABASE {_quoted(str(database))} TO {_quoted(str(user))}; "
            f"or create the schema and GRANT USAGE, CREATE ON it"
            + (f"; {avoid_missing}." if avoid_missing else ".")
        )
    return DatabaseGrants(str(user), str(database), temporary=bool(db_temp))


def translate_privilege_error(
    error: psycopg.errors.InsufficientPrivilege, action: str
) -> TargetError:
    """A privilege failure during the load, as one sentence naming what was refused."""
    detail = (error.diag.message_primary or str(error)).strip()
    return PermissionMissing(
        f"PostgreSQL refused to {action} ({detail}): grant the loading role CREATE on the "
        "database and USAGE, CREATE on the schema."
    )
