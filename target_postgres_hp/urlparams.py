"""`jdbc_url_params`: JDBC-style `key=value&...` pairs turned into libpq connection parameters.

Users moving from JDBC-based loaders keep their parameter string. Parameters with a libpq
meaning are translated; JDBC-driver-only knobs are accepted and ignored; the keys the settings
own are overwritten (with a warning); anything else is refused, so a typo never goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from target_postgres_hp.errors import UrlParamsError, setting_problem

SETTING = "jdbc_url_params"

DEFAULT_CONNECT_TIMEOUT = 60

#: Keys the settings own; a value given in the parameter string is dropped with a warning.
RESERVED = {
    "currentSchema": "schema",
    "user": "username",
    "password": "password",
    "ssl": "ssl",
    "sslmode": "ssl_mode",
}

#: JDBC driver knobs without a libpq meaning.
JDBC_ONLY = frozenset(
    {
        "prepareThreshold",
        "preparedStatementCacheQueries",
        "preparedStatementCacheSizeMiB",
        "reWriteBatchedInserts",
        "defaultRowFetchSize",
        "binaryTransfer",
        "binaryTransferEnable",
        "binaryTransferDisable",
        "loginTimeout",
        "socketTimeout",
        "cancelSignalTimeout",
        "loggerLevel",
        "loggerFile",
        "logUnclosedConnections",
        "logServerErrorDetail",
        "assumeMinServerVersion",
        "stringtype",
        "sslfactory",
        "sslfactoryarg",
        "sslhostnameverifier",
        "sslpasswordcallback",
        "sslResponseTimeout",
        "readOnly",
        "readOnlyMode",
        "autosave",
        "cleanupSavepoints",
        "disableColumnSanitiser",
        "escapeSyntaxCallMode",
        "hideUnprivilegedObjects",
        "hostRecheckSeconds",
        "loadBalanceHosts",
        "maxResultBuffer",
        "receiveBufferSize",
        "sendBufferSize",
        "replication",
        "socketFactory",
        "socketFactoryArg",
        "tcpNoDelay",
        "unknownLength",
        "quoteReturningIdentifiers",
        "adaptiveFetch",
        "adaptiveFetchMaximum",
        "adaptiveFetchMinimum",
        "allowEncodingChanges",
        "databaseMetadataCacheFields",
        "databaseMetadataCacheFieldsMiB",
        "groupStartupParameters",
        "jaasApplicationName",
        "jaasLogin",
        "kerberosServerName",
        "gsslib",
        "gssResponseTimeout",
        "sspiServiceClass",
        "useSpnego",
        "channelBinding",
        "xmlFactoryFactory",
        "localSocketAddress",
        "authenticationPluginClassName",
        "protocolVersion",
        "preferQueryMode",
    }
)

_TARGET_SERVER_TYPES = {
    "any": "any",
    "primary": "primary",
    "master": "primary",
    "secondary": "standby",
    "standby": "standby",
    "preferSecondary": "prefer-standby",
    "preferStandby": "prefer-standby",
    "read-write": "read-write",
    "read-only": "read-only",
}

_GSS_ENC_MODES = frozenset({"disable", "prefer", "require"})

#: libpq spellings users may type by habit, with the JDBC key that means the same.
_LIBPQ_HINTS = {
    "connect_timeout": "connectTimeout",
    "application_name": "ApplicationName",
    "keepalives": "tcpKeepAlive",
    "target_session_attrs": "targetServerType",
    "gssencmode": "gssEncMode",
}


@dataclass(frozen=True)
class UrlParams:
    """The libpq parameters a parameter string yields, and what to tell the user about it."""

    libpq: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    overwritten: tuple[str, ...] = ()


def _connect_timeout(value: str) -> str:
    if not value.isdigit():
        raise UrlParamsError(
            setting_problem(
                SETTING,
                f"has connectTimeout={value!r}",
                "give a whole number of seconds (0 waits as long as possible)",
            )
        )
    return str(int(value))


def _tcp_keepalive(value: str) -> str:
    lowered = value.lower()
    if lowered not in {"true", "false"}:
        raise UrlParamsError(
            setting_problem(SETTING, f"has tcpKeepAlive={value!r}", "use true or false")
        )
    return "1" if lowered == "true" else "0"


def _target_server_type(value: str) -> str:
    if value not in _TARGET_SERVER_TYPES:
        choices = ", ".join(sorted(_TARGET_SERVER_TYPES))
        raise UrlParamsError(
            setting_problem(SETTING, f"has targetServerType={value!r}", f"use one of {choices}")
        )
    return _TARGET_SERVER_TYPES[value]


def _gss_enc_mode(value: str) -> str:
    if value not in _GSS_ENC_MODES:
        raise UrlParamsError(
            setting_problem(SETTING, f"has gssEncMode={value!r}", "use disable, prefer or require")
        )
    return value


def _verbatim(value: str) -> str:
    return value


#: JDBC key -> (libpq key, value translation).
KNOWN: dict[str, tuple[str, Callable[[str], str]]] = {
    "connectTimeout": ("connect_timeout", _connect_timeout),
    "ApplicationName": ("application_name", _verbatim),
    "applicationName": ("application_name", _verbatim),
    "options": ("options", _verbatim),
    "tcpKeepAlive": ("keepalives", _tcp_keepalive),
    "targetServerType": ("target_session_attrs", _target_server_type),
    "sslrootcert": ("sslrootcert", _verbatim),
    "sslcert": ("sslcert", _verbatim),
    "sslkey": ("sslkey", _verbatim),
    "sslpassword": ("sslpassword", _verbatim),
    "gssEncMode": ("gssencmode", _gss_enc_mode),
}


def parse(text: str | None) -> UrlParams:
    """Translate a `key1=value1&key2=value2` string; raise UrlParamsError naming the culprit."""
    libpq = {"connect_timeout": str(DEFAULT_CONNECT_TIMEOUT)}
    ignored: list[str] = []
    overwritten: list[str] = []
    for pair in (text or "").split("&"):
        if not pair.strip():
            continue
        key, sep, raw_value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = pair if "password" not in pair.lower() else "<a pair naming a password>"
            raise UrlParamsError(
                setting_problem(
                    SETTING, f"has the malformed pair {shown!r}", "write each pair as key=value"
                )
            )
        value = unquote_plus(raw_value)
        if key in RESERVED:
            overwritten.append(key)
        elif key in JDBC_ONLY:
            ignored.append(key)
        elif key in KNOWN:
            libpq_key, translate = KNOWN[key]
            libpq[libpq_key] = translate(value)
        else:
            hint = _LIBPQ_HINTS.get(key)
            fix = (
                f"write it as {hint}"
                if hint
                else "remove it (supported keys: " + ", ".join(sorted(KNOWN)) + ")"
            )
            raise UrlParamsError(setting_problem(SETTING, f"has the unknown key {key!r}", fix))
    return UrlParams(libpq=libpq, ignored=tuple(ignored), overwritten=tuple(overwritten))
