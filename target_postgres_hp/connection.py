"""How the target reaches PostgreSQL: embedded server or host, SSH tunnel, TLS files, libpq
parameters, session settings, and the privilege check made before any input is read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import psycopg
from psycopg import sql as pgsql

from target_postgres_hp import embedded, sql
from target_postgres_hp.config import Settings
from target_postgres_hp.errors import (
    ConnectError,
    KeyMaterialError,
    PermissionMissing,
    TargetError,
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


#: SQLSTATEs of a server ending the session (administrator command, crash, shutdown).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})


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
    port: int
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


class Database:
    """Everything one run needs to open connections, from start to cleanup."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyfiles = KeyFiles()
        self._tunnel: Tunnel | None = None
        self._params: dict[str, str] | None = None
        self._server: embedded.EmbeddedServer | None = None
        self.address: ServerAddress | None = None

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
                        Endpoint(host=settings.host or "", port=settings.port),
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
            user=embedded.SUPERUSER, host=server.socket_directory, port=5432, database=database
        )
        return {
            "host": server.socket_directory,
            "user": embedded.SUPERUSER,
            "dbname": database,
            "application_name": APPLICATION_NAME,
        }

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """A new connection with the session settings applied (UTC, ISO, search_path)."""
        self.open()
        assert self._params is not None
        assert self.address is not None
        try:
            conn = psycopg.connect(psycopg.conninfo.make_conninfo("", **self._params))
        except psycopg.Error as error:
            raise ConnectError(explain_connect_error(error, self.address, self.settings)) from None
        conn.adapters.register_dumper(msgspec.Raw, JsonTextDumper)
        conn.execute(sql.session_setup(self.search_path))
        conn.commit()
        return conn

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
