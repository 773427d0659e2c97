"""Settings: the documented names, the MeltanoLabs aliases, defaults and validation.

`CONFIG_SCHEMA` is what `--about` shows and Meltano reads. `Settings.from_config()` turns a
user's config into typed, validated settings before any input is read, or raises one
`ConfigError` listing one sentence per mistake (setting, problem, fix). Secrets are never part
of a message or a repr.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import (
    ACTIVATE_VERSION_CONFIG,
    FLATTENING_CONFIG,
    STREAM_MAPS_CONFIG,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from target_postgres_hp import urlparams
from target_postgres_hp.errors import ConfigError, UrlParamsError, setting_problem
from target_postgres_hp.naming import (
    NAMESPACE_DEFINITIONS,
    SOURCE_NAMESPACE,
    NamespaceDefinition,
    Placement,
    place_stream,
)

logger = logging.getLogger("target-postgres-hp")

SSLMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SSL_MODES: tuple[SSLMode, ...] = (
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
)
UNENCRYPTED_MODES = frozenset({"disable", "allow", "prefer"})

TunnelMethod = Literal["NO_TUNNEL", "SSH_KEY_AUTH", "SSH_PASSWORD_AUTH"]
TUNNEL_METHODS: tuple[TunnelMethod, ...] = ("NO_TUNNEL", "SSH_KEY_AUTH", "SSH_PASSWORD_AUTH")

LoadMethod = Literal["append", "append-dedup", "overwrite"]
LOAD_METHOD_NAMES: dict[str, LoadMethod] = {
    "append": "append",
    "append-dedup": "append-dedup",
    "overwrite": "overwrite",
    # singer-sdk's names for the same modes
    "append-only": "append",
    "upsert": "append-dedup",
}

CdcDeletionMode = Literal["hard_delete", "soft_delete"]

DEFAULT_BATCH_SIZE_ROWS = 10_000
#: Seconds a run waits for another run loading the same stream (SPEC §9).
DEFAULT_LOCK_WAIT_SECONDS = 300


DEFAULT_EMBEDDED_DIR = ".target-postgres-hp/pgdata"

_SSL_MODE_SCHEMA = th.ObjectType(
    th.Property(
        "mode",
        th.StringType,
        allowed_values=list(SSL_MODES),
        description=(
            "disable, allow or prefer are accepted only through an SSH tunnel or to a "
            "loopback host or Unix socket; require encrypts; verify-ca also checks the "
            "server certificate against ca_certificate; verify-full also checks the host name."
        ),
    ),
    th.Property(
        "ca_certificate",
        th.StringType,
        secret=True,
        description="CA certificate (PEM text or a file path); required for verify-ca and "
        "verify-full.",
    ),
    th.Property(
        "client_certificate",
        th.StringType,
        secret=True,
        description="Client certificate for certificate authentication (PEM text or path).",
    ),
    th.Property(
        "client_key",
        th.StringType,
        secret=True,
        description="Client private key (PEM text or path).",
    ),
    th.Property(
        "client_key_password",
        th.StringType,
        secret=True,
        description="Passphrase of an encrypted client_key.",
    ),
)

_TUNNEL_SCHEMA = th.ObjectType(
    th.Property(
        "tunnel_method",
        th.StringType,
        allowed_values=list(TUNNEL_METHODS),
        description="NO_TUNNEL (direct connection), SSH_KEY_AUTH or SSH_PASSWORD_AUTH.",
    ),
    th.Property("tunnel_host", th.StringType, description="Host name or IP of the SSH bastion."),
    th.Property(
        "tunnel_port",
        th.IntegerType(minimum=1, maximum=65535),
        description="SSH port of the bastion (default 22).",
    ),
    th.Property("tunnel_user", th.StringType, description="SSH user on the bastion."),
    th.Property(
        "ssh_key",
        th.StringType,
        secret=True,
        description="SSH_KEY_AUTH: the private key (PEM or OpenSSH text, or a file path); "
        "RSA, Ed25519 and ECDSA keys work.",
    ),
    th.Property(
        "ssh_key_password",
        th.StringType,
        secret=True,
        description="SSH_KEY_AUTH: passphrase of an encrypted ssh_key.",
    ),
    th.Property(
        "tunnel_user_password",
        th.StringType,
        secret=True,
        description="SSH_PASSWORD_AUTH: the SSH user's password.",
    ),
    th.Property(
        "tunnel_host_key",
        th.StringType,
        description="Optional: the bastion's public host key (`ssh-ed25519 AAAA...`, as in "
        "known_hosts); when set, any other key is refused.",
    ),
)

_MELTANOLABS_SSH_SCHEMA = th.ObjectType(
    th.Property("enable", th.BooleanType, description="Alias: true means SSH_KEY_AUTH."),
    th.Property("host", th.StringType, description="Alias of tunnel_method.tunnel_host."),
    th.Property(
        "port",
        th.IntegerType(minimum=1, maximum=65535),
        description="Alias of tunnel_method.tunnel_port.",
    ),
    th.Property("username", th.StringType, description="Alias of tunnel_method.tunnel_user."),
    th.Property(
        "private_key", th.StringType, secret=True, description="Alias of tunnel_method.ssh_key."
    ),
    th.Property(
        "private_key_password",
        th.StringType,
        secret=True,
        description="Alias of tunnel_method.ssh_key_password.",
    ),
)

_LOAD_METHOD_VALUES = list(LOAD_METHOD_NAMES)

CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "host",
        th.StringType,
        description="Server host name or IP. Without host, the target loads into an embedded "
        "PostgreSQL (install the `embedded` extra).",
    ),
    th.Property(
        "port", th.IntegerType(minimum=1, maximum=65535), default=5432, description="Server port."
    ),
    th.Property("username", th.StringType, description="Login role."),
    th.Property("password", th.StringType, secret=True, description="Password of the role."),
    th.Property("database", th.StringType, description="Database name (default: the user name)."),
    th.Property(
        "schema",
        th.StringType,
        default="public",
        description="One schema or several separated by commas, all put on search_path in "
        "order; the first receives the final tables of streams without a namespace. "
        "Case sensitive.",
    ),
    th.Property(
        "raw_data_schema",
        th.StringType,
        default="airbyte_internal",
        description="Schema of the raw tables.",
    ),
    th.Property(
        "jdbc_url_params",
        th.StringType,
        description="Extra connection parameters as key1=value1&key2=value2 (connectTimeout, "
        "ApplicationName, options, tcpKeepAlive, targetServerType, sslrootcert, sslcert, "
        "sslkey, sslpassword, gssEncMode); connectTimeout defaults to 60 s, 0 waits as long "
        "as possible.",
    ),
    th.Property(
        "ssl", th.BooleanType, default=True, description="false is the same as ssl_mode disable."
    ),
    th.Property(
        "ssl_mode",
        _SSL_MODE_SCHEMA,
        default={"mode": "require"},
        description="TLS mode and certificates.",
    ),
    th.Property(
        "tunnel_method",
        _TUNNEL_SCHEMA,
        default={"tunnel_method": "NO_TUNNEL"},
        description="SSH tunnel to reach the database through a bastion.",
    ),
    th.Property(
        "drop_cascade",
        th.BooleanType,
        default=False,
        description="Allow DROP ... CASCADE of objects that depend on the target's tables and "
        "cannot be saved and recreated. Permanent data loss is possible.",
    ),
    th.Property(
        "load_method",
        th.StringType,
        allowed_values=_LOAD_METHOD_VALUES,
        description="append, append-dedup or overwrite (append-only and upsert are accepted). "
        "Default: append-dedup for streams with key properties, else append.",
    ),
    th.Property(
        "stream_load_methods",
        th.ObjectType(additional_properties=th.StringType(allowed_values=_LOAD_METHOD_VALUES)),
        description="Per-stream load_method overrides: {stream name: method}.",
    ),
    th.Property(
        "disable_type_dedupe",
        th.BooleanType,
        default=False,
        description="Write raw tables only (no final tables).",
    ),
    th.Property(
        "cdc_deletion_mode",
        th.StringType,
        allowed_values=["hard_delete", "soft_delete"],
        default="hard_delete",
        description="What a record with _ab_cdc_deleted_at or _sdc_deleted_at does in "
        "append-dedup streams: remove the row, or keep it with the marker.",
    ),
    th.Property(
        "namespace_definition",
        th.StringType,
        allowed_values=list(NAMESPACE_DEFINITIONS),
        default="source",
        description="Where final tables go: source (the stream's namespace, the schema part "
        "of schema-table stream names), destination (the first schema, tables named after "
        "the stream without its namespace) or custom (namespace_format). Default: source, "
        "or destination when default_target_schema is set.",
    ),
    th.Property(
        "namespace_format",
        th.StringType,
        default=SOURCE_NAMESPACE,
        description="With namespace_definition custom: the schema of a stream's final table, "
        "${SOURCE_NAMESPACE} replaced by the stream's namespace (streams without one go to "
        "the first schema).",
    ),
    th.Property(
        "stream_prefix",
        th.StringType,
        description="Prepended to every final table name; raw table names follow.",
    ),
    th.Property(
        "ignore_stream_namespace",
        th.BooleanType,
        default=False,
        description="Treat stream names as having no namespace: every stream goes to the "
        "first schema, its table named after the whole stream name (sales-users: "
        "sales_users).",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1),
        default=DEFAULT_BATCH_SIZE_ROWS,
        description="Records per committed batch.",
    ),
    th.Property(
        "lock_wait_seconds",
        th.IntegerType(minimum=0),
        default=DEFAULT_LOCK_WAIT_SECONDS,
        description="How long a run waits for another run that is loading the same stream "
        "before it stops with an error (0: do not wait).",
    ),
    th.Property(
        "embedded_data_directory",
        th.StringType,
        default=DEFAULT_EMBEDDED_DIR,
        description="Without host: data directory of the embedded PostgreSQL (relative paths "
        "are under the working directory).",
    ),
    # MeltanoLabs target-postgres names, accepted so configs carry over unchanged.
    th.Property("user", th.StringType, description="Alias of username."),
    th.Property(
        "default_target_schema",
        th.StringType,
        description="Alias of schema; also means namespace_definition destination unless "
        "that is set, as in MeltanoLabs target-postgres.",
    ),
    th.Property("ssl_enable", th.BooleanType, description="Alias of ssl."),
    th.Property(
        "ssl_certificate_authority",
        th.StringType,
        secret=True,
        description="Alias of ssl_mode.ca_certificate.",
    ),
    th.Property(
        "ssl_client_certificate",
        th.StringType,
        secret=True,
        description="Alias of ssl_mode.client_certificate.",
    ),
    th.Property(
        "ssl_client_private_key",
        th.StringType,
        secret=True,
        description="Alias of ssl_mode.client_key.",
    ),
    th.Property("ssh_tunnel", _MELTANOLABS_SSH_SCHEMA, description="Alias of tunnel_method."),
    th.Property(
        "sqlalchemy_url",
        th.StringType,
        secret=True,
        description="Alias: postgresql://user:password@host:port/database?sslmode=... instead "
        "of host, port, username, password, database and ssl_mode.mode.",
    ),
).to_dict()

# MeltanoLabs accepts `ssl_mode` as a plain string; the schema above documents the object form.
CONFIG_SCHEMA["properties"]["ssl_mode"] = {
    **CONFIG_SCHEMA["properties"]["ssl_mode"],
    "type": ["object", "string"],
}

_SECRET_PATHS = frozenset(
    {
        "password",
        "sqlalchemy_url",
        "ssl_mode.ca_certificate",
        "ssl_mode.client_certificate",
        "ssl_mode.client_key",
        "ssl_mode.client_key_password",
        "tunnel_method.ssh_key",
        "tunnel_method.ssh_key_password",
        "tunnel_method.tunnel_user_password",
        "ssl_certificate_authority",
        "ssl_client_certificate",
        "ssl_client_private_key",
        "ssh_tunnel.private_key",
        "ssh_tunnel.private_key_password",
    }
)

#: The singer-sdk settings of the capabilities the target declares (stream maps, flattening,
#: ACTIVATE_VERSION), which the SDK itself reads.
_SDK_SETTINGS = frozenset(
    name
    for builtin in (STREAM_MAPS_CONFIG, FLATTENING_CONFIG, ACTIVATE_VERSION_CONFIG)
    for name in builtin["properties"]
)

#: Settings of other Postgres loaders (MeltanoLabs, Airbyte) and singer-sdk settings of
#: capabilities the target does not declare: no meaning here, accepted with a log line each.
_FOREIGN_SETTINGS = frozenset(
    {
        "batch_config",
        "dialect+driver",
        "use_copy",
        "activate_version",
        "sanitize_null_text_characters",
        "interpret_content_encoding",
        "ssl_storage_directory",
        "ssl_client_certificate_enable",
        "unconstrained_number",
        "raw_data_schema_name",
        "add_record_metadata",
        "hard_delete",
        "validate_records",
        "max_varchar_length",
        "use_singer_decimal",
        "emit_activate_version_messages",
    }
)

#: The default of every setting that has one, as `--about` shows it: the one place defaults are
#: written (`_Builder.value` applies them).
_DEFAULTS: dict[str, Any] = {
    name: spec["default"] for name, spec in CONFIG_SCHEMA["properties"].items() if "default" in spec
}

#: Every top-level setting name the target accepts.
_TOP_LEVEL_NAMES = frozenset(CONFIG_SCHEMA["properties"]) | _SDK_SETTINGS
#: The names accepted inside each object setting.
_BLOCK_NAMES = {
    block: frozenset(CONFIG_SCHEMA["properties"][block]["properties"])
    for block in ("ssl_mode", "tunnel_method", "ssh_tunnel")
}
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


@dataclass(frozen=True)
class SSLSettings:
    """TLS mode and certificate material (PEM text or file paths)."""

    mode: SSLMode
    ca_certificate: str | None = field(default=None, repr=False)
    client_certificate: str | None = field(default=None, repr=False)
    client_key: str | None = field(default=None, repr=False)
    client_key_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TunnelSettings:
    """How to reach the database: directly, or through an SSH bastion."""

    method: TunnelMethod
    host: str | None = None
    port: int = 22
    user: str | None = None
    ssh_key: str | None = field(default=None, repr=False)
    ssh_key_password: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    host_key: str | None = None

    @property
    def enabled(self) -> bool:
        """True when the database connection goes through a tunnel."""
        return self.method != "NO_TUNNEL"


@dataclass(frozen=True)
class Settings:
    """Validated settings, with every default applied and every alias resolved."""

    host: str | None
    port: int
    username: str | None
    password: str | None = field(repr=False)
    database: str | None
    schemas: tuple[str, ...]
    raw_data_schema: str
    url_params: urlparams.UrlParams
    ssl: SSLSettings
    tunnel: TunnelSettings
    drop_cascade: bool
    load_method: LoadMethod | None
    stream_load_methods: dict[str, LoadMethod]
    disable_type_dedupe: bool
    cdc_deletion_mode: CdcDeletionMode
    namespace_definition: NamespaceDefinition
    namespace_format: str
    stream_prefix: str
    ignore_stream_namespace: bool
    batch_size_rows: int
    lock_wait_seconds: int
    embedded_data_directory: Path

    @property
    def default_schema(self) -> str:
        """Schema of the final tables of streams without a namespace."""
        return self.schemas[0]

    @property
    def embedded(self) -> bool:
        """True when no host is configured and the embedded server is used."""
        return self.host is None

    def place(self, stream_name: str) -> Placement:
        """Where a stream's final table goes (SPEC §6.4)."""
        return place_stream(
            stream_name,
            definition=self.namespace_definition,
            namespace_format=self.namespace_format,
            default_schema=self.default_schema,
            prefix=self.stream_prefix,
            ignore_namespace=self.ignore_stream_namespace,
        )

    @property
    def schema_settings(self) -> str:
        """The settings that choose a final table's schema, for messages."""
        chosen = {
            "source": "namespace_definition source: each stream's own namespace",
            "destination": "namespace_definition destination: the first schema",
            "custom": f"namespace_definition custom with namespace_format {self.namespace_format}",
        }[self.namespace_definition]
        return f"{chosen}; schema {','.join(self.schemas)}"

    def load_method_for(self, stream_name: str, *, has_keys: bool) -> LoadMethod:
        """The load method of one stream: its override, else the setting, else by keys."""
        method = self.stream_load_methods.get(stream_name) or self.load_method
        if method is not None:
            return method
        return "append-dedup" if has_keys else "append"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Validate `config`; raise ConfigError with one sentence per mistake."""
        return _Builder(config).build()


def read_config_file(path: str) -> dict[str, Any]:
    """The settings in one `--config` file; a file that is missing, unreadable, not JSON or not
    a JSON object is one sentence (SPEC §2), never a traceback."""
    fix = "pass a file holding one JSON object."
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"Config file {path} does not exist: {fix}"]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8"
        raise ConfigError([f"Config file {path} cannot be read ({reason}): {fix}"]) from None
    try:
        settings = json.loads(text)
    except ValueError as error:
        raise ConfigError([f"Config file {path} is not JSON ({error}): {fix}"]) from None
    if not isinstance(settings, dict):
        raise ConfigError([f"Config file {path} is not a JSON object: {fix}"])
    return settings


def _closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name a mistyped `name` most likely meant: a close spelling, else the same
    letters in another case; None when nothing is close."""
    candidates = sorted(valid)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return close[0]
    return next((other for other in candidates if other.lower() == name.lower()), None)


#: The prefix of the environment variables `--config ENV` reads (singer-sdk's rule).
ENV_PREFIX = "TARGET_POSTGRES_HP_"


def unknown_environment_settings(environ: Mapping[str, str]) -> list[str]:
    """With `--config ENV`: one sentence per `TARGET_POSTGRES_HP_*` variable that names no
    setting (the SDK would ignore it, and a misspelled host would load into the embedded
    server). Names with a second underscore after the prefix (Meltano's `..._<extra>`) are
    not settings and are left alone."""
    known = {
        re.sub(r"\W", "_", name.upper()): name for name in _TOP_LEVEL_NAMES | _FOREIGN_SETTINGS
    }
    problems = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        suffix = variable.removeprefix(ENV_PREFIX)
        if not suffix or suffix.startswith("_") or suffix in known:
            continue
        close = _closest(suffix, known)
        fix = (
            f"rename it to {ENV_PREFIX}{close} (setting {known[close]}) or unset it"
            if close
            else "unset it (target-postgres-hp --about lists every setting)"
        )
        problems.append(f"Environment variable {variable} names no setting of this target: {fix}.")
    return problems


def is_local_host(host: str | None) -> bool:
    """True when traffic to `host` cannot leave the machine: no host (embedded), a Unix
    socket directory, `localhost` or a loopback address (every host of a list)."""
    if host is None:
        return True
    for part in host.split(","):
        name = part.strip()
        if name.startswith(("/", "@")) or name.lower() == "localhost":
            continue
        try:
            if ipaddress.ip_address(name.strip("[]")).is_loopback:
                continue
        except ValueError:
            pass
        return False
    return True


def _is_secret(path: str) -> bool:
    return path in _SECRET_PATHS or path.split(".")[0] in {"password", "sqlalchemy_url"}


def _describe_schema_error(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "config"
    shown = "" if _is_secret(path) else f" (got {error.instance!r})"
    kind = error.validator
    if kind == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(str(name) for name in names if name != "null")
        article = "an" if wanted[0] in "aeiou" else "a"
        return setting_problem(path, f"has the wrong type{shown}", f"give {article} {wanted}")
    if kind == "enum":
        choices = ", ".join(str(choice) for choice in cast(list[object], error.validator_value))
        return setting_problem(path, f"has an unknown value{shown}", f"use one of {choices}")
    if kind in {"minimum", "maximum"}:
        subschema = cast(dict[str, object], error.schema)
        low, high = subschema.get("minimum"), subschema.get("maximum")
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        return setting_problem(path, f"is out of range{shown}", f"give a number {bounds}")
    return setting_problem(path, f"is invalid{shown}", error.message)


class _Builder:
    """Resolves aliases and defaults while collecting every problem it finds."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.problems: list[str] = []

    def problem(self, setting: str, problem: str, fix: str) -> None:
        self.problems.append(setting_problem(setting, problem, fix))

    def value(self, name: str, *, empty_is_unset: bool = False) -> Any:
        """A top-level setting's value, or its default when unset or null (or empty, for
        settings where the destination treats an empty value as unset)."""
        value = self.config.get(name)
        if value is None or (empty_is_unset and value == ""):
            return _DEFAULTS.get(name)
        return value

    def build(self) -> Settings:
        validator = jsonschema.Draft7Validator(CONFIG_SCHEMA)
        for error in sorted(validator.iter_errors(self.config), key=lambda e: e.json_path):
            self.problems.append(_describe_schema_error(error))
        self._check_names()
        if self.problems:
            raise ConfigError(self.problems)
        connection = self._connection_fields()
        ssl = self._ssl(connection.pop("sslmode", None))
        tunnel = self._tunnel()
        schemas = self._schemas()
        definition, namespace_format = self._namespaces()
        params = self._url_params()
        load_method = self._load_method(self.config.get("load_method"), "load_method")
        stream_methods = {
            stream: method
            for stream, value in (self.config.get("stream_load_methods") or {}).items()
            if (method := self._load_method(value, f"stream_load_methods.{stream}"))
        }
        raw_schema: str = self.value("raw_data_schema", empty_is_unset=True)
        if not raw_schema.strip():
            self.problem("raw_data_schema", "is empty", "name a schema or leave it unset")
        host = connection["host"]
        username = connection["username"]
        if host is not None and not username:
            self.problem("username", "is missing", "name the role to log in as")
        if ssl.mode in UNENCRYPTED_MODES and not tunnel.enabled and not is_local_host(host):
            self.problem(
                "ssl_mode.mode",
                f"is {ssl.mode}, which may send data unencrypted to {host}",
                "use require, verify-ca or verify-full, or reach the server through "
                "tunnel_method (SSH)",
            )
        if self.problems:
            raise ConfigError(self.problems)
        return Settings(
            host=host,
            port=connection["port"],
            username=username,
            password=connection["password"],
            database=connection["database"],
            schemas=schemas,
            raw_data_schema=raw_schema,
            url_params=params,
            ssl=ssl,
            tunnel=tunnel,
            drop_cascade=bool(self.value("drop_cascade")),
            load_method=load_method,
            stream_load_methods=stream_methods,
            disable_type_dedupe=bool(self.value("disable_type_dedupe")),
            cdc_deletion_mode=self.value("cdc_deletion_mode"),
            namespace_definition=definition,
            namespace_format=namespace_format,
            stream_prefix=self.config.get("stream_prefix") or "",
            ignore_stream_namespace=bool(self.value("ignore_stream_namespace")),
            batch_size_rows=int(self.value("batch_size_rows")),
            lock_wait_seconds=int(self.value("lock_wait_seconds")),
            embedded_data_directory=Path(
                self.value("embedded_data_directory", empty_is_unset=True)
            ).expanduser(),
        )

    def _check_names(self) -> None:
        """Refuse a setting name that is not ours, naming the closest valid one (a misspelled
        `host` must never fall back to the embedded server); log each setting of another
        loader that has no meaning here."""
        for key in sorted(self.config):
            if key in _FOREIGN_SETTINGS:
                logger.info("Setting %s belongs to another loader and has no effect here", key)
            elif key not in _TOP_LEVEL_NAMES:
                self._unknown(key, key, _TOP_LEVEL_NAMES)
        for block, names in _BLOCK_NAMES.items():
            value = self.config.get(block)
            if isinstance(value, dict):
                for key in sorted(value):
                    if key not in names:
                        self._unknown(f"{block}.{key}", key, names, prefix=f"{block}.")

    def _unknown(self, path: str, key: str, valid: Iterable[str], *, prefix: str = "") -> None:
        close = _closest(key, valid)
        fix = (
            f"rename it to {prefix}{close} (the closest setting) or remove it"
            if close
            else "remove it (target-postgres-hp --about lists every setting)"
        )
        self.problem(path, "is not a setting of this target", fix)

    def _aliased(self, primary: str, alias: str) -> Any:
        """Value of a setting given under its own name or its alias, refusing a contradiction."""
        value, alias_value = self.config.get(primary), self.config.get(alias)
        if value is not None and alias_value is not None and value != alias_value:
            self.problem(
                alias,
                f"contradicts `{primary}`",
                f"set only one of {primary} and {alias} (its alias)",
            )
        return value if value is not None else alias_value

    def _connection_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "host": self.config.get("host"),
            "port": self.config.get("port"),
            "username": self._aliased("username", "user"),
            "password": self.config.get("password"),
            "database": self.config.get("database"),
        }
        url = self.config.get("sqlalchemy_url")
        if url:
            fields.update(self._from_sqlalchemy_url(url, fields))
        if fields["port"] is None:
            fields["port"] = _DEFAULTS["port"]
        if fields["host"] is not None and not str(fields["host"]).strip():
            self.problem(
                "host", "is empty", "give a host name, or remove it for the embedded server"
            )
        return fields

    def _from_sqlalchemy_url(self, text: str, explicit: dict[str, Any]) -> dict[str, Any]:
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):
            self.problem(
                "sqlalchemy_url",
                "is not a URL",
                "write it as postgresql://user:password@host:port/database",
            )
            return {}
        if url.get_backend_name() not in {"postgresql", "postgres"}:
            self.problem(
                "sqlalchemy_url",
                f"names the backend {url.get_backend_name()!r}",
                "use a postgresql:// URL",
            )
            return {}
        from_url: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "username": url.username,
            "password": url.password,
            "database": url.database,
        }
        for key, value in from_url.items():
            if value is not None and explicit[key] is not None and explicit[key] != value:
                self.problem(key, "contradicts sqlalchemy_url", f"set {key} in one place only")
        query = dict(url.query)
        sslmode = query.pop("sslmode", None)
        if query:
            self.problem(
                "sqlalchemy_url",
                f"has the query parameters {', '.join(sorted(query))}",
                "keep only sslmode in the URL and put other parameters in jdbc_url_params",
            )
        merged = {key: value for key, value in from_url.items() if value is not None}
        if sslmode is not None:
            merged["sslmode"] = sslmode if isinstance(sslmode, str) else sslmode[-1]
        return merged

    def _ssl(self, url_sslmode: str | None) -> SSLSettings:
        raw = self.config.get("ssl_mode")
        block: dict[str, Any] = {}
        if isinstance(raw, str):
            block = {"mode": raw}
        elif isinstance(raw, dict):
            block = dict(raw)
        if url_sslmode is not None:
            if "mode" in block and block["mode"] != url_sslmode:
                self.problem(
                    "ssl_mode.mode", "contradicts sslmode in sqlalchemy_url", "set it in one place"
                )
            block["mode"] = url_sslmode
        aliases = {
            "ca_certificate": "ssl_certificate_authority",
            "client_certificate": "ssl_client_certificate",
            "client_key": "ssl_client_private_key",
        }
        for name, alias in aliases.items():
            alias_value = self.config.get(alias)
            if alias_value is None:
                continue
            if block.get(name) is not None and block[name] != alias_value:
                self.problem(
                    alias,
                    f"contradicts `ssl_mode.{name}`",
                    f"set only one of ssl_mode.{name} and {alias} (its alias)",
                )
            block[name] = alias_value

        ssl_on = self._aliased("ssl", "ssl_enable")
        mode = block.get("mode")
        if ssl_on is False:
            if mode not in {None, "disable"}:
                logger.warning(
                    "ssl is false, so ssl_mode.mode %r is not used: the connection is not "
                    "encrypted by TLS",
                    mode,
                )
            mode = "disable"
        if mode is None:
            mode = _DEFAULTS["ssl_mode"]["mode"]
        if mode not in SSL_MODES:
            self.problem(
                "ssl_mode.mode",
                f"has an unknown value {mode!r}",
                f"use one of {', '.join(SSL_MODES)}",
            )
            mode = _DEFAULTS["ssl_mode"]["mode"]
        if mode in {"verify-ca", "verify-full"} and not block.get("ca_certificate"):
            self.problem(
                "ssl_mode.ca_certificate",
                f"is missing but ssl_mode.mode is {mode}",
                "give the CA certificate as PEM text or a file path",
            )
        if block.get("client_key") and not block.get("client_certificate"):
            self.problem(
                "ssl_mode.client_certificate",
                "is missing but ssl_mode.client_key is set",
                "give the client certificate that belongs to the key",
            )
        if block.get("client_certificate") and not block.get("client_key"):
            self.problem(
                "ssl_mode.client_key",
                "is missing but ssl_mode.client_certificate is set",
                "give the private key of the client certificate",
            )
        return SSLSettings(
            mode=cast(SSLMode, mode),
            ca_certificate=block.get("ca_certificate"),
            client_certificate=block.get("client_certificate"),
            client_key=block.get("client_key"),
            client_key_password=block.get("client_key_password"),
        )

    def _tunnel(self) -> TunnelSettings:
        block = dict(self.config.get("tunnel_method") or {})
        legacy = self.config.get("ssh_tunnel") or {}
        if legacy.get("enable"):
            if block.get("tunnel_method") not in {None, "NO_TUNNEL"}:
                self.problem(
                    "ssh_tunnel",
                    "is enabled as well as tunnel_method",
                    "configure the tunnel in tunnel_method only",
                )
            block = {
                "tunnel_method": "SSH_KEY_AUTH",
                "tunnel_host": legacy.get("host"),
                "tunnel_port": legacy.get("port"),
                "tunnel_user": legacy.get("username"),
                "ssh_key": legacy.get("private_key"),
                "ssh_key_password": legacy.get("private_key_password"),
            }
        method = block.get("tunnel_method") or "NO_TUNNEL"
        if method == "NO_TUNNEL":
            return TunnelSettings(method="NO_TUNNEL")
        for required in ("tunnel_host", "tunnel_user"):
            if not block.get(required):
                self.problem(
                    f"tunnel_method.{required}",
                    f"is missing for {method}",
                    "give the bastion's host name"
                    if required == "tunnel_host"
                    else "give the SSH user name",
                )
        credential, fix = (
            ("ssh_key", "give the private key")
            if method == "SSH_KEY_AUTH"
            else ("tunnel_user_password", "give the SSH user's password")
        )
        if not block.get(credential):
            self.problem(f"tunnel_method.{credential}", f"is missing for {method}", fix)
        return TunnelSettings(
            method=cast(TunnelMethod, method),
            host=block.get("tunnel_host"),
            port=int(block.get("tunnel_port") or 22),
            user=block.get("tunnel_user"),
            ssh_key=block.get("ssh_key"),
            ssh_key_password=block.get("ssh_key_password"),
            password=block.get("tunnel_user_password"),
            host_key=block.get("tunnel_host_key"),
        )

    def _schemas(self) -> tuple[str, ...]:
        default = (_DEFAULTS["schema"],)
        text = self._aliased("schema", "default_target_schema")
        if text is None:
            return default
        schemas = tuple(part.strip() for part in text.split(",") if part.strip())
        if not schemas:
            self.problem(
                "schema", "names no schema", "give one schema name, or several separated by commas"
            )
            return default
        return schemas

    def _namespaces(self) -> tuple[NamespaceDefinition, str]:
        """`namespace_definition` and `namespace_format`; MeltanoLabs' `default_target_schema`
        means `destination` unless the definition is set (SPEC §6.4)."""
        definition: NamespaceDefinition = self.value("namespace_definition")
        implied = self.config.get("default_target_schema")
        if self.config.get("namespace_definition") is None and implied is not None:
            definition = "destination"
            logger.info(
                "default_target_schema is set and namespace_definition is not: every final"
                " table goes to schema %s, named after its stream without the namespace, as"
                " in MeltanoLabs target-postgres (namespace_definition destination)",
                implied,
            )
        text: str | None = self.config.get("namespace_format")
        if text is None or (definition != "custom" and not text.strip()):
            return definition, _DEFAULTS["namespace_format"]
        if definition != "custom":
            if text != SOURCE_NAMESPACE:
                self.problem(
                    "namespace_format",
                    f"is set but namespace_definition is {definition}",
                    "set namespace_definition to custom to use it, or remove it",
                )
            return definition, _DEFAULTS["namespace_format"]
        others = sorted(set(_PLACEHOLDER.findall(text)) - {SOURCE_NAMESPACE})
        if not text.strip():
            self.problem(
                "namespace_format",
                "is empty",
                f"give a schema name, optionally with {SOURCE_NAMESPACE} in it",
            )
        elif others:
            self.problem(
                "namespace_format",
                f"has the placeholder {others[0]}",
                f"use {SOURCE_NAMESPACE}, the only one replaced",
            )
        return definition, text

    def _url_params(self) -> urlparams.UrlParams:
        try:
            params = urlparams.parse(self.config.get("jdbc_url_params"))
        except UrlParamsError as error:
            self.problems.append(str(error))
            return urlparams.UrlParams()
        for key in params.overwritten:
            logger.warning(
                "jdbc_url_params sets %s, which the %s setting overwrites",
                key,
                urlparams.RESERVED[key],
            )
        if params.ignored:
            logger.info(
                "jdbc_url_params: JDBC-only parameters without effect here, ignored: %s",
                ", ".join(params.ignored),
            )
        return params

    def _load_method(self, value: str | None, setting: str) -> LoadMethod | None:
        if value is None:
            return None
        if value not in LOAD_METHOD_NAMES:
            self.problem(
                setting,
                f"has an unknown value {value!r}",
                "use append, append-dedup or overwrite",
            )
            return None
        return LOAD_METHOD_NAMES[value]
