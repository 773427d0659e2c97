"""Settings: the documented names, the MeltanoLabs aliases, defaults and validation.

`CONFIG_SCHEMA` (in `settings_schema`) is what `--about` shows and Meltano reads.
`Settings.from_config()` turns a user's config into typed, validated settings before any input
is read, or raises one `ConfigError` listing one sentence per mistake (setting, problem, fix).
Secrets are never part of a message or a repr.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from target_postgres_hp import urlparams
from target_postgres_hp.config_reader import ConfigReader
from target_postgres_hp.connection_settings import (
    ConnectionReader,
    SSLSettings,
    TunnelSettings,
    is_local_host,
)
from target_postgres_hp.errors import ConfigError, UrlParamsError
from target_postgres_hp.naming import (
    SOURCE_NAMESPACE,
    NamespaceDefinition,
    Placement,
    place_stream,
)
from target_postgres_hp.setting_names import ENV_PREFIX, unknown_environment_settings
from target_postgres_hp.settings_schema import (
    CONFIG_SCHEMA,
    DEFAULT_BATCH_SIZE_ROWS,
    DEFAULT_EMBEDDED_DIR,
    DEFAULT_LOCK_WAIT_SECONDS,
    DEFAULTS,
    LOAD_METHOD_NAMES,
    SSL_MODES,
    TABLE_LAYOUTS,
    TUNNEL_METHODS,
    UNENCRYPTED_MODES,
    CdcDeletionMode,
    LoadMethod,
    SSLMode,
    TableLayout,
    TunnelMethod,
)

#: The public names, wherever they are defined.
__all__ = [
    "CONFIG_SCHEMA",
    "DEFAULT_BATCH_SIZE_ROWS",
    "DEFAULT_EMBEDDED_DIR",
    "DEFAULT_LOCK_WAIT_SECONDS",
    "ENV_PREFIX",
    "LOAD_METHOD_NAMES",
    "SSL_MODES",
    "TABLE_LAYOUTS",
    "TUNNEL_METHODS",
    "UNENCRYPTED_MODES",
    "CdcDeletionMode",
    "LoadMethod",
    "SSLMode",
    "SSLSettings",
    "Settings",
    "TableLayout",
    "TunnelMethod",
    "TunnelSettings",
    "is_local_host",
    "read_config_file",
    "unknown_environment_settings",
]

logger = logging.getLogger("target-postgres-hp")

_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
#: `$SOURCE_NAMESPACE` or `{SOURCE_NAMESPACE}` outside a `${...}` placeholder: a typo for
#: `${SOURCE_NAMESPACE}` that would otherwise name a schema literally.
_HALF_PLACEHOLDER = re.compile(r"\$SOURCE_NAMESPACE|\{SOURCE_NAMESPACE\}", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Validated settings, with every default applied and every alias resolved."""

    host: str | None
    #: One port, or one per host of a host list, as libpq takes them ("5432,5433").
    port: str
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
    #: Which tables records go to (SPEC §4.5); `disable_type_dedupe` is raw_only.
    table_layout: TableLayout
    cdc_deletion_mode: CdcDeletionMode
    namespace_definition: NamespaceDefinition
    namespace_format: str
    stream_prefix: str
    ignore_stream_namespace: bool
    batch_size_rows: int
    #: The most seconds a received record waits before it is committed (SPEC §12).
    batch_wait_limit_seconds: int
    lock_wait_seconds: int
    embedded_data_directory: Path
    #: The one directory BATCH manifests may name files under (resolved), or None (SPEC §9).
    batch_root: Path | None = None

    @property
    def default_schema(self) -> str:
        """Schema of the final tables of streams without a namespace."""
        return self.schemas[0]

    @property
    def final_tables(self) -> bool:
        """Whether the layout writes typed final tables."""
        return self.table_layout != "raw_only"

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


class _Builder(ConfigReader):
    """Resolves aliases and defaults while collecting every problem it finds."""

    def build(self) -> Settings:
        self.check_schema()
        if self.problems:
            raise ConfigError(self.problems)
        reader = ConnectionReader(self.config, self.problems)
        connection = reader.connection_fields()
        ssl = reader.ssl(connection.pop("sslmode", None))
        tunnel = reader.tunnel()
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
        if tunnel.enabled and host is not None and ("," in host or "," in connection["port"]):
            self.problem(
                "host",
                "lists several hosts, which an SSH tunnel cannot reach",
                "name the one host the bastion forwards to, or use no tunnel_method",
            )
        if ssl.mode in UNENCRYPTED_MODES and not tunnel.enabled and not is_local_host(host):
            self.problem(
                "ssl_mode.mode",
                f"is {ssl.mode}, which may send data unencrypted to {host}",
                "use require, verify-ca or verify-full, or reach the server through "
                "tunnel_method (SSH)",
            )
        table_layout = self._table_layout()
        batch_root = self._batch_root()
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
            table_layout=table_layout,
            cdc_deletion_mode=self.value("cdc_deletion_mode"),
            namespace_definition=definition,
            namespace_format=namespace_format,
            stream_prefix=self.config.get("stream_prefix") or "",
            ignore_stream_namespace=bool(self.value("ignore_stream_namespace")),
            batch_size_rows=int(self.value("batch_size_rows")),
            batch_wait_limit_seconds=int(self.value("batch_wait_limit_seconds")),
            lock_wait_seconds=int(self.value("lock_wait_seconds")),
            embedded_data_directory=Path(
                self.value("embedded_data_directory", empty_is_unset=True)
            ).expanduser(),
            batch_root=batch_root,
        )

    def _batch_root(self) -> Path | None:
        """`batch_root`, resolved (symlinks, `..`, `~`); it must be an existing directory."""
        text: str | None = self.config.get("batch_root")
        if text is None:
            return None
        fix = "name the directory the tap writes its batch files to, or remove the setting"
        if not text.strip():
            self.problem("batch_root", "is empty", fix)
            return None
        try:
            root = Path(text).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            root = None
        if root is None or not root.is_dir():
            self.problem("batch_root", f"is {text!r}, which is not an existing directory", fix)
            return None
        return root

    def _table_layout(self) -> TableLayout:
        """`table_layout`, with `disable_type_dedupe` as another way to say raw_only."""
        raw_only = bool(self.value("disable_type_dedupe"))
        chosen = self.config.get("table_layout")
        if raw_only and chosen not in (None, "raw_only"):
            self.problem(
                "disable_type_dedupe",
                f"is true (raw tables only) while table_layout is {chosen}",
                "set only table_layout",
            )
        if raw_only:
            return "raw_only"
        layout: TableLayout = self.value("table_layout")
        return layout

    def _schemas(self) -> tuple[str, ...]:
        default = (DEFAULTS["schema"],)
        text = self.aliased("schema", "default_target_schema")
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
            return definition, DEFAULTS["namespace_format"]
        if definition != "custom":
            if text != SOURCE_NAMESPACE:
                self.problem(
                    "namespace_format",
                    f"is set but namespace_definition is {definition}",
                    "set namespace_definition to custom to use it, or remove it",
                )
            return definition, DEFAULTS["namespace_format"]
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
        elif half := _HALF_PLACEHOLDER.search(_PLACEHOLDER.sub("", text)):
            self.problem(
                "namespace_format",
                f"has {half.group()}, which is not replaced (it would be part of the schema name)",
                f"write {SOURCE_NAMESPACE}, with the dollar sign and the braces"
                f" (in meltano.yml \\{SOURCE_NAMESPACE}, as Meltano would replace it)",
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
