"""The settings as `--about` shows them and Meltano reads them: `CONFIG_SCHEMA`, the value
types it allows and the default of every setting that has one."""

from __future__ import annotations

from typing import Any, Literal

from singer_sdk import typing as th

from target_postgres_hp.naming import NAMESPACE_DEFINITIONS, SOURCE_NAMESPACE

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

TableLayout = Literal["raw_and_final", "direct", "raw_only"]
TABLE_LAYOUTS: tuple[TableLayout, ...] = ("raw_and_final", "direct", "raw_only")

DEFAULT_BATCH_SIZE_ROWS = 20_000
#: Seconds a run waits for another run loading the same stream (SPEC §9).
DEFAULT_LOCK_WAIT_SECONDS = 300
#: The most seconds a received record waits before it is committed (SPEC §12).
DEFAULT_BATCH_WAIT_LIMIT_SECONDS = 30


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
        description="Server host name or IP, or several separated by commas (as libpq takes "
        "them: with targetServerType=primary in jdbc_url_params the writable one is used). "
        "Without host, the target loads into an embedded PostgreSQL (install the `embedded` "
        "extra).",
    ),
    th.Property(
        "port",
        th.IntegerType(minimum=1, maximum=65535),
        default=5432,
        description="Server port; with several hosts, one port for all or a list as long as "
        'the host list ("5432,5433").',
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
        description="Write raw tables only (no final tables): the same as table_layout raw_only.",
    ),
    th.Property(
        "table_layout",
        th.StringType,
        allowed_values=list(TABLE_LAYOUTS),
        default="raw_and_final",
        description="Which tables a stream's records go to: raw_and_final (a raw table with "
        "each record as received, and a typed final table), direct (the typed final table "
        "alone, as the destination's direct load), raw_only (raw tables only).",
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
        "the first schema). Write the placeholder with the dollar sign and the braces: "
        "$SOURCE_NAMESPACE or {SOURCE_NAMESPACE} is refused, not taken literally.",
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
        "batch_wait_limit_seconds",
        th.IntegerType(minimum=1),
        default=DEFAULT_BATCH_WAIT_LIMIT_SECONDS,
        description="The most time a received record waits before it is committed, and the "
        "STATE after it emitted, however slowly the input comes (the name pipelinewise "
        "targets use).",
    ),
    th.Property(
        "lock_wait_seconds",
        th.IntegerType(minimum=0),
        default=DEFAULT_LOCK_WAIT_SECONDS,
        description="How long a run waits for another run that is loading the same stream "
        "before it stops with an error (0: do not wait).",
    ),
    th.Property(
        "batch_root",
        th.StringType,
        description="A directory: BATCH manifests may only name files under it (symlinks "
        "and .. resolved). Default: any regular file the target may read, but its own "
        "config and key files.",
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

# A host list takes a port list, written as libpq does: "5432,5433".
CONFIG_SCHEMA["properties"]["port"] = {
    **CONFIG_SCHEMA["properties"]["port"],
    "type": ["string", "integer"],
}

# MeltanoLabs accepts `ssl_mode` as a plain string; the schema above documents the object form.
CONFIG_SCHEMA["properties"]["ssl_mode"] = {
    **CONFIG_SCHEMA["properties"]["ssl_mode"],
    "type": ["object", "string"],
}

#: The default of every setting that has one, as `--about` shows it: the one place defaults are
#: written (`ConfigReader.value` applies them).
DEFAULTS: dict[str, Any] = {
    name: spec["default"] for name, spec in CONFIG_SCHEMA["properties"].items() if "default" in spec
}
