"""SSH tunnel to the database through a bastion (`tunnel_method`).

The gateway is probed first with paramiko so each failure gets its own message (unreachable,
host key, authentication, unreadable key); `sshtunnel` then forwards a loopback port to the
database for as long as the run lasts. Nothing is read from ~/.ssh, an agent or ssh_config:
only the configured key or password is offered.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import socket
from dataclasses import dataclass
from types import TracebackType

import paramiko
import sshtunnel
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from target_postgres_hp.config import TunnelSettings
from target_postgres_hp.errors import (
    KeyMaterialError,
    TunnelAuthError,
    TunnelError,
    TunnelHostKeyMismatch,
    TunnelKeyError,
    TunnelUnreachable,
    setting_problem,
)
from target_postgres_hp.keyfiles import KeyFiles

logger = logging.getLogger("target-postgres-hp.tunnel")
# paramiko logs refusals at ERROR on its own; each one is reported here as one sentence instead.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

CONNECT_TIMEOUT_SECONDS = 15.0
KEEPALIVE_SECONDS = 30.0

_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.RSAKey,
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
)


_PASSPHRASE_MISSING = setting_problem(
    "tunnel_method.ssh_key", "is encrypted with a passphrase", "set tunnel_method.ssh_key_password"
)


def _from_pkcs8(text: str, passphrase: str | None) -> str:
    """PKCS#8 text (`BEGIN PRIVATE KEY`, which paramiko cannot read) re-encoded in OpenSSH
    format, unencrypted and only in memory; other text is returned unchanged."""
    if "BEGIN PRIVATE KEY" not in text and "BEGIN ENCRYPTED PRIVATE KEY" not in text:
        return text
    try:
        key = serialization.load_pem_private_key(
            text.encode(), password=passphrase.encode() if passphrase else None
        )
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return text


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """Parse an RSA, Ed25519 or ECDSA private key from PEM (traditional or PKCS#8) or OpenSSH
    text."""
    if "ENCRYPTED PRIVATE KEY" in text and not passphrase:
        raise TunnelKeyError(_PASSPHRASE_MISSING)
    text = _from_pkcs8(text, passphrase)
    encrypted = False
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            encrypted = True
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    if encrypted and not passphrase:
        raise TunnelKeyError(_PASSPHRASE_MISSING)
    raise TunnelKeyError(
        setting_problem(
            "tunnel_method.ssh_key",
            "cannot be read as an RSA, Ed25519 or ECDSA private key"
            + (" with the given passphrase" if passphrase else ""),
            "give the private key in PEM or OpenSSH format (and its passphrase, if any)",
        )
    )


def parse_host_key(text: str) -> paramiko.PKey:
    """Parse `tunnel_host_key`: a public key line as in known_hosts or `*.pub` files."""
    tokens = text.split()
    for index, token in enumerate(tokens[:-1]):
        if token.startswith(("ssh-", "ecdsa-")):
            try:
                blob = base64.b64decode(tokens[index + 1], validate=True)
                return paramiko.PKey.from_type_string(token, blob)
            except (binascii.Error, paramiko.SSHException, ValueError):
                break
    raise TunnelKeyError(
        setting_problem(
            "tunnel_method.tunnel_host_key",
            "is not a public key line",
            "copy the bastion's key as `ssh-ed25519 AAAA...` from known_hosts or ssh-keyscan",
        )
    )


@dataclass(frozen=True)
class Endpoint:
    """Where the database connection should go once the tunnel is up."""

    host: str
    port: int


class Tunnel:
    """An open SSH tunnel forwarding a loopback port to the database host."""

    def __init__(self, settings: TunnelSettings, remote: Endpoint, keyfiles: KeyFiles) -> None:
        self._settings = settings
        self._remote = remote
        self._pkey: paramiko.PKey | None = None
        self._host_key = parse_host_key(settings.host_key) if settings.host_key else None
        if settings.method == "SSH_KEY_AUTH":
            try:
                text = keyfiles.read_setting("tunnel_method.ssh_key", settings.ssh_key or "")
            except KeyMaterialError as error:
                raise TunnelKeyError(str(error)) from None
            self._pkey = load_private_key(text, settings.ssh_key_password)
        self._forwarder: sshtunnel.SSHTunnelForwarder | None = None

    @property
    def _gateway(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _probe(self) -> None:
        """Log in once with paramiko so that each failure is reported for what it is."""
        host, port = self._settings.host or "", self._settings.port
        try:
            sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS)
        except OSError as error:
            raise TunnelUnreachable(
                f"The SSH bastion {self._gateway} cannot be reached ({error.strerror or error}): "
                "check tunnel_method.tunnel_host and tunnel_port, and that the bastion "
                "accepts connections from this machine."
            ) from None
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=CONNECT_TIMEOUT_SECONDS)
            self._check_host_key(transport.get_remote_server_key())
            if self._pkey is not None:
                transport.auth_publickey(self._settings.user or "", self._pkey)
            else:
                transport.auth_password(self._settings.user or "", self._settings.password or "")
            self._check_forwarding(transport)
        except paramiko.AuthenticationException:
            credential = "key" if self._pkey is not None else "password"
            raise TunnelAuthError(
                f"The SSH bastion {self._gateway} refused user "
                f"{self._settings.user!r} with the configured {credential}: check "
                f"tunnel_method.tunnel_user and the {credential}."
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise TunnelUnreachable(
                f"The SSH bastion {self._gateway} did not complete the SSH handshake "
                f"({error}): check that tunnel_method.tunnel_port is an SSH port."
            ) from None
        finally:
            transport.close()

    def _check_forwarding(self, transport: paramiko.Transport) -> None:
        """Ask the bastion for one channel to the database, so a refusal is named here."""
        try:
            channel = transport.open_channel(
                "direct-tcpip",
                (self._remote.host, self._remote.port),
                ("127.0.0.1", 0),
                timeout=CONNECT_TIMEOUT_SECONDS,
            )
        except paramiko.ChannelException as error:
            raise TunnelError(
                f"The SSH bastion {self._gateway} could not open a connection to the database "
                f"at {self._remote.host}:{self._remote.port} ({error.text}): check host and "
                "port as the bastion sees them, and that it allows TCP forwarding."
            ) from None
        channel.close()

    def _check_host_key(self, offered: paramiko.PKey) -> None:
        if self._host_key is None:
            logger.info(
                "SSH bastion %s presented host key %s %s (set tunnel_method.tunnel_host_key "
                "to refuse any other)",
                self._gateway,
                offered.get_name(),
                offered.get_base64(),
            )
            return
        if offered.get_name() != self._host_key.get_name() or (
            offered.asbytes() != self._host_key.asbytes()
        ):
            raise TunnelHostKeyMismatch(
                f"The SSH bastion {self._gateway} presented a host key other than "
                "tunnel_method.tunnel_host_key: verify the bastion's identity before "
                "updating the setting."
            )

    def open(self) -> Endpoint:
        """Open the tunnel and return the local end the database connection must use."""
        self._probe()
        quiet = logging.getLogger("target-postgres-hp.tunnel.sshtunnel")
        quiet.setLevel(logging.CRITICAL)
        forwarder = sshtunnel.SSHTunnelForwarder(
            (self._settings.host, self._settings.port),
            ssh_username=self._settings.user,
            ssh_pkey=self._pkey,
            ssh_password=None if self._pkey is not None else self._settings.password,
            ssh_host_key=self._host_key,
            remote_bind_address=(self._remote.host, self._remote.port),
            local_bind_address=("127.0.0.1", 0),
            allow_agent=False,
            host_pkey_directories=[],
            ssh_config_file=None,
            set_keepalive=KEEPALIVE_SECONDS,
            logger=quiet,
        )
        try:
            forwarder.start()
        except sshtunnel.BaseSSHTunnelForwarderError:
            _discard(forwarder)
            raise TunnelError(
                f"The SSH tunnel through {self._gateway} to {self._remote.host}:"
                f"{self._remote.port} could not be opened: check that the bastion may forward "
                "to the database host and port."
            ) from None
        self._forwarder = forwarder
        local_port = int(forwarder.local_bind_port)
        logger.info(
            "SSH tunnel open: 127.0.0.1:%d -> %s -> %s:%d",
            local_port,
            self._gateway,
            self._remote.host,
            self._remote.port,
        )
        return Endpoint(host="127.0.0.1", port=local_port)

    def close(self) -> None:
        """Close the tunnel; safe to call more than once."""
        if self._forwarder is not None:
            self._forwarder.stop(force=True)
            self._forwarder = None
            logger.info("SSH tunnel closed")

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _discard(forwarder: sshtunnel.SSHTunnelForwarder) -> None:
    """Release a forwarder whose start failed. sshtunnel's own stop() waits forever when the
    gateway session never came up, so the listening sockets are closed directly then."""
    if forwarder.is_active:
        forwarder.stop(force=True)
        return
    for server in forwarder._server_list:
        server.server_close()
    forwarder._server_list = []
