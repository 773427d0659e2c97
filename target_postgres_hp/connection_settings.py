"""How to reach the database: host, port, role and database (also from `sqlalchemy_url`), TLS
and the SSH tunnel, read from a config with their MeltanoLabs aliases."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from target_postgres_hp.config_reader import ConfigReader
from target_postgres_hp.settings_schema import (
    DEFAULTS,
    SSL_MODES,
    SSLMode,
    TunnelMethod,
)

logger = logging.getLogger("target-postgres-hp")


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


class ConnectionReader(ConfigReader):
    """The connection settings of a config: aliases resolved, defaults applied, problems
    collected."""

    def connection_fields(self) -> dict[str, Any]:
        """host, port, username, password and database; `sslmode` too when sqlalchemy_url
        has it."""
        fields: dict[str, Any] = {
            "host": self.config.get("host"),
            "port": self.config.get("port"),
            "username": self.aliased("username", "user"),
            "password": self.config.get("password"),
            "database": self.config.get("database"),
        }
        url = self.config.get("sqlalchemy_url")
        if url:
            fields.update(self._from_sqlalchemy_url(url, fields))
        if fields["port"] is None:
            fields["port"] = DEFAULTS["port"]
        if fields["host"] is not None and not str(fields["host"]).strip():
            self.problem(
                "host", "is empty", "give a host name, or remove it for the embedded server"
            )
        fields["port"] = self._ports(fields["port"], fields["host"])
        return fields

    def _ports(self, port: object, host: object) -> str:
        """`port` as libpq takes it: one port, or one per host of a host list (SPEC §12)."""
        if isinstance(port, int):
            return str(port)
        parts = [part.strip() for part in str(port).split(",")]
        hosts = len(str(host).split(",")) if isinstance(host, str) else 1
        if not all(part.isdigit() and 1 <= int(part) <= 65535 for part in parts):
            self.problem(
                "port",
                f"is not a port number or a list of them (got {port!r})",
                "give a number from 1 to 65535, or one per host separated by commas",
            )
        elif len(parts) not in (1, hosts):
            self.problem(
                "port",
                f"lists {len(parts)} ports for {hosts} hosts",
                "give one port for every host, or one for all",
            )
        return ",".join(parts)

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

    def ssl(self, url_sslmode: str | None) -> SSLSettings:
        """`ssl_mode`, its aliases and `ssl`; `url_sslmode` is the sslmode of sqlalchemy_url."""
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

        ssl_on = self.aliased("ssl", "ssl_enable")
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
            mode = DEFAULTS["ssl_mode"]["mode"]
        if mode not in SSL_MODES:
            self.problem(
                "ssl_mode.mode",
                f"has an unknown value {mode!r}",
                f"use one of {', '.join(SSL_MODES)}",
            )
            mode = DEFAULTS["ssl_mode"]["mode"]
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

    def tunnel(self) -> TunnelSettings:
        """`tunnel_method`, or MeltanoLabs' `ssh_tunnel` when that is enabled."""
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
