# Fixed throwaway credentials (S105), /tmp default paths (S108) and SQL built from constant
# identifiers (S608) are intended in this script:
# ruff: noqa: S105, S108, S608
"""Benchmark runner: load one generated Singer stream with each tool and compare them.

    python bench/run.py [--variant basic] [--n 1000000] [--repeat 1] [--tools hp,limit,meltanolabs]
                        [--dsn ADMIN_DSN] [--out bench/results.jsonl] [--hp-cmd PATH]
                        [--hp-config-extra JSON]

Tools:
  hp           target-postgres-hp, pip-installed from this repository into a venv
               (or the command given with --hp-cmd)
  limit        bench/limit_rawfinal.py, the lean reference loader for the same table layout
  meltanolabs  meltanolabs-target-postgres 0.8.1, load_method upsert

The stream is generated once into --data-dir, the venvs are created once in --venv-dir (the hp
venv is reinstalled when the repository's sources change). Without --dsn a throwaway server is
started from the `pgserver` wheel on 127.0.0.1 and removed at the end.

Every run: drop and recreate database `bench` (owner role bench, password bench), CHECKPOINT,
then the tool with the stream on stdin. Measured: wall time, the tool's peak RSS and CPU (its
rusage), the server's CPU (postmaster and children, from /proc). A run is ok when the tool
exits 0 and tap_bench.<stream> holds one row per record. One JSON line per run goes to --out;
a markdown table of medians is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
STREAMS = {"basic": "users", "wide": "wide_events"}
TOOLS = ("hp", "limit", "meltanolabs")
SCHEMA = "tap_bench"
BENCH_DB = BENCH_ROLE = BENCH_PASSWORD = "bench"  # fixed, throwaway credentials
REQUIREMENTS = {
    "limit": ["psycopg[binary]>=3.2,<3.4", "orjson>=3.10"],
    "meltanolabs": ["meltanolabs-target-postgres==0.8.1"],
    "server": ["pgserver>=0.1.4,<0.2"],
    "runner": ["psycopg[binary]>=3.2,<3.4"],
}
# The settings of the team's benchmark cluster; the pgserver path uses them too.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
}
REEXEC_FLAG = "HP_BENCH_REEXEC"


class BenchError(Exception):
    """A setup problem, reported as one sentence without a traceback."""


# ---------------------------------------------------------------------------- arguments


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See bench/README.md for what each column means.",
    )
    parser.add_argument("--variant", choices=sorted(STREAMS), default="basic")
    parser.add_argument("--n", type=int, default=1_000_000, help="records in the stream")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool")
    parser.add_argument("--tools", default="hp,limit,meltanolabs", help="comma-separated")
    parser.add_argument("--dsn", help="admin DSN of a PostgreSQL on this machine (loopback)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.jsonl")
    parser.add_argument("--hp-cmd", type=Path, help="an installed target-postgres-hp to run")
    parser.add_argument("--hp-config-extra", default="{}", help="JSON merged into hp's config")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/hp-bench-data"))
    parser.add_argument("--venv-dir", type=Path, default=Path("/tmp/hp-bench-venvs"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/hp-bench-runs"))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument(
        "--lock-file",
        type=Path,
        default=Path("/tmp/bench-pg/bench.lock"),
        help="held while running so that two benchmarks never overlap on this machine",
    )
    args = parser.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(args.tools) - set(TOOLS))
    if unknown or not args.tools:
        parser.error(f"--tools takes a comma-separated subset of {','.join(TOOLS)}")
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be at least 1")
    try:
        args.hp_config_extra = json.loads(args.hp_config_extra)
    except json.JSONDecodeError:
        parser.error("--hp-config-extra must be a JSON object")
    if not isinstance(args.hp_config_extra, dict):
        parser.error("--hp-config-extra must be a JSON object")
    if args.hp_cmd and not (args.hp_cmd.is_file() and os.access(args.hp_cmd, os.X_OK)):
        parser.error(f"--hp-cmd {args.hp_cmd} is not an executable file")
    return args


# ---------------------------------------------------------------------------- venvs


def ensure_venv(venv_dir: Path, name: str, requirements: list[str], fingerprint: str = "") -> Path:
    """Create venv_dir/name with `requirements` installed, unless it already has them."""
    venv = venv_dir / name
    stamp = venv / ".hp-bench-installed"
    wanted = "\n".join([*requirements, fingerprint])
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv
    print(f"Installing {' '.join(requirements)} into {venv} ...", flush=True)
    if not (venv / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    if subprocess.run([*pip, "--disable-pip-version-check", *requirements]).returncode != 0:
        raise BenchError(f"pip could not install {' '.join(requirements)} into {venv}.")
    stamp.write_text(wanted)
    return venv


def source_fingerprint() -> str:
    """A hash of the repository's package sources, so that the hp venv follows edits."""
    digest = hashlib.sha256()
    files = [REPO_ROOT / "pyproject.toml", *sorted((REPO_ROOT / "target_postgres_hp").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    return "source " + digest.hexdigest()


def import_psycopg(venv_dir: Path) -> Any:
    """Import psycopg 3; if this Python lacks it, re-run this script from a venv that has it."""
    try:
        import psycopg
    except ImportError:
        if os.environ.get(REEXEC_FLAG):
            raise BenchError("psycopg could not be imported even from the runner venv.") from None
        venv = ensure_venv(venv_dir, "runner", REQUIREMENTS["runner"])
        python = str(venv / "bin" / "python")
        os.environ[REEXEC_FLAG] = "1"
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606
    return psycopg


# ---------------------------------------------------------------------------- the stream


def ensure_stream(data_dir: Path, variant: str, n: int) -> Path:
    """The cached stream file for (variant, n), generated by gen_stream.py if missing."""
    path = data_dir / f"{variant}-{n}.jsonl"
    if path.is_file():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"Generating {path} ...", flush=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        cmd = [sys.executable, str(BENCH_DIR / "gen_stream.py"), str(n), "--variant", variant]
        subprocess.run(cmd, stdout=out, check=True)
    partial.rename(path)
    return path


# ---------------------------------------------------------------------------- the server


@dataclass
class Server:
    """Where the PostgreSQL server is, and its postmaster pid when /proc can tell."""

    admin_dsn: str
    host: str
    port: int
    postmaster_pid: int | None = None


def is_loopback(host: str) -> bool:
    """Whether host is localhost or a loopback IP address (no name lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(psycopg: Any, dsn: str) -> None:
    """Refuse, before any connection, a DSN whose server is not on loopback TCP."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    named = [
        params.get("host") or os.environ.get("PGHOST", ""),
        params.get("hostaddr") or os.environ.get("PGHOSTADDR", ""),
    ]
    hosts = [h for value in named for h in value.split(",") if h]
    if not hosts or not all(is_loopback(h) for h in hosts):
        shown = ",".join(hosts) or "a Unix socket"
        raise BenchError(f"--dsn must name a server on loopback TCP (127.0.0.1, ::1), not {shown}.")


def connect(psycopg: Any, dsn: str, **overrides: Any) -> Any:
    """An autocommit connection, or a BenchError that says where it could not connect."""
    params = psycopg.conninfo.conninfo_to_dict(dsn, **overrides)
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10, **overrides)
    except psycopg.OperationalError as error:
        first_line = (str(error).strip().splitlines() or ["no reason given"])[0]
        reason = " ".join(first_line.rsplit("failed: ", 1)[-1].split())
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        raise BenchError(
            f"Cannot connect to PostgreSQL at {where} as {params.get('user')!r} ({reason})."
        ) from None


def describe_server(psycopg: Any, dsn: str) -> Server:
    """Connect once with the admin DSN: check it, find the postmaster, print the settings."""
    check_loopback(psycopg, dsn)
    with connect(psycopg, dsn) as conn:
        host, port = conn.info.host, conn.info.port
        if conn.info.dbname == BENCH_DB:
            raise BenchError(f"The admin DSN must name another database than {BENCH_DB!r}.")
        version = conn.execute("show server_version").fetchone()[0]
        names = ["shared_buffers", "max_wal_size", "fsync", "synchronous_commit"]
        query = "select name, current_setting(name) from pg_settings where name = any(%s)"
        settings = conn.execute(query, (names,)).fetchall()
        data_directory = conn.execute("show data_directory").fetchone()[0]
    print(
        f"PostgreSQL {version} at {host}:{port}; "
        + ", ".join(f"{name}={value}" for name, value in sorted(settings)),
        flush=True,
    )
    return Server(dsn, host, port, read_postmaster_pid(Path(data_directory)))


def read_postmaster_pid(data_directory: Path) -> int | None:
    """The postmaster pid from postmaster.pid, or None (then server CPU is not reported)."""
    try:
        pid = int((data_directory / "postmaster.pid").read_text().split("\n", 1)[0])
        Path(f"/proc/{pid}/stat").stat()
    except (OSError, ValueError):
        print("Server CPU will not be reported: cannot read the server's postmaster.pid.")
        return None
    return pid


def server_os_user() -> pwd.struct_passwd | None:
    """The user to run initdb/postgres as when we are root (they refuse root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--user-group", "pgserver"], check=True)
    return pwd.getpwnam("pgserver")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def embedded_server(venv_dir: Path) -> Iterator[str]:
    """Run a throwaway PostgreSQL from the pgserver wheel on 127.0.0.1; yield its admin DSN."""
    venv = ensure_venv(venv_dir, "server", REQUIREMENTS["server"])
    bins = sorted(venv.glob("lib/python*/site-packages/pgserver/pginstall/bin"))
    if not bins:
        raise BenchError(f"The pgserver wheel in {venv} has no pginstall/bin directory.")
    bindir, user = bins[0], server_os_user()
    root = Path(tempfile.mkdtemp(prefix="hp-bench-pg-"))
    data, port = root / "data", free_port()

    def as_owner(*cmd: str) -> None:
        """Run a server binary as the owner of the data directory; raise on failure."""
        uid, gid = (user.pw_uid, user.pw_gid) if user else (None, None)
        groups: list[int] | None = [] if user else None
        result = subprocess.run(
            cmd, cwd=root, capture_output=True, text=True, user=uid, group=gid, extra_groups=groups
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BenchError(f"{Path(cmd[0]).name} failed: {tail[0].rstrip('.')}.")

    try:
        (root / "pw").write_text("postgres\n")
        if user:
            for path in (root, root / "pw"):
                os.chown(path, user.pw_uid, user.pw_gid)
        print(f"Starting a throwaway PostgreSQL (pgserver) in {root} on 127.0.0.1:{port} ...")
        as_owner(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                 "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                 f"--pwfile={root / 'pw'}")  # fmt: skip
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(port),
                    "unix_socket_directories": f"'{root}'", **SERVER_SETTINGS}  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        (root / "pw").unlink()
        pg_ctl, log = [str(bindir / "pg_ctl"), "-D", str(data), "-w"], root / "server.log"
        try:
            as_owner(*pg_ctl, "-l", str(log), "start")
        except BenchError as error:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            fatal = [line for line in lines if "FATAL" in line] or lines or ["empty"]
            raise BenchError(f"{error} Server log: {fatal[-1]}") from None
        try:
            yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres"
        finally:
            as_owner(*pg_ctl, "-m", "fast", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (index 0 is field 3, the state)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def server_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of the postmaster, its reaped children and its live children."""
    if postmaster is None:
        return None
    try:
        fields = proc_stat(postmaster)
    except OSError:
        return None
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                child = proc_stat(entry.name)
            except OSError:
                continue  # exited meanwhile
            if int(child[1]) == postmaster:
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def recreate_database(conn: Any) -> None:
    """Recreate database bench, owned by role bench (login, password bench), then CHECKPOINT."""
    exists = conn.execute("select 1 from pg_roles where rolname = %s", (BENCH_ROLE,)).fetchone()
    verb = "alter" if exists else "create"
    conn.execute(f"{verb} role {BENCH_ROLE} login password '{BENCH_PASSWORD}'")
    conn.execute(f"drop database if exists {BENCH_DB} with (force)")
    conn.execute(f"create database {BENCH_DB} owner {BENCH_ROLE}")
    conn.execute("checkpoint")


def wait_for_disconnect(conn: Any, timeout: float = 10) -> None:
    """Wait until no backend serves database bench, so their CPU has been counted."""
    deadline = time.monotonic() + timeout
    query = "select count(*) from pg_stat_activity where datname = %s"
    while conn.execute(query, (BENCH_DB,)).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # let the postmaster reap the exited backends


def count_rows(psycopg: Any, admin_dsn: str, stream: str) -> int | None:
    """Rows in tap_bench.<stream> of database bench, or None when the table is missing."""
    with connect(psycopg, admin_dsn, dbname=BENCH_DB) as conn:
        try:
            return int(conn.execute(f'select count(*) from {SCHEMA}."{stream}"').fetchone()[0])
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None


# ---------------------------------------------------------------------------- tools


@dataclass
class Tool:
    """A command to benchmark; `config` (if any) is written to a file passed as --config."""

    name: str
    argv: list[str]
    config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def hp_tool(args: argparse.Namespace, server: Server) -> Tool:
    """target-postgres-hp: --hp-cmd, or this repository installed into the hp venv."""
    if args.hp_cmd:
        command = str(args.hp_cmd)
    else:
        venv = ensure_venv(args.venv_dir, "hp", [str(REPO_ROOT)], source_fingerprint())
        command = str(venv / "bin" / "target-postgres-hp")
    config = {
        "host": server.host,
        "port": server.port,
        "username": BENCH_ROLE,
        "password": BENCH_PASSWORD,
        "database": BENCH_DB,
        "schema": SCHEMA,
        "ssl_mode": {"mode": "disable"},
    }
    return Tool("hp", [command], config | args.hp_config_extra, args.hp_config_extra)


def limit_tool(args: argparse.Namespace, server: Server) -> Tool:
    """bench/limit_rawfinal.py in the limit venv."""
    python = ensure_venv(args.venv_dir, "limit", REQUIREMENTS["limit"]) / "bin" / "python"
    dsn = f"host={server.host} port={server.port} dbname={BENCH_DB} user={BENCH_ROLE} "
    dsn += f"password={BENCH_PASSWORD}"
    script = str(BENCH_DIR / "limit_rawfinal.py")
    return Tool("limit", [str(python), script, "--dsn", dsn, "--schema", SCHEMA])


def meltanolabs_tool(args: argparse.Namespace, server: Server) -> Tool:
    """meltanolabs-target-postgres 0.8.1 in upsert mode (its settings: user, database, ...)."""
    venv = ensure_venv(args.venv_dir, "meltanolabs", REQUIREMENTS["meltanolabs"])
    config = {
        "host": server.host,
        "port": server.port,
        "user": BENCH_ROLE,
        "password": BENCH_PASSWORD,
        "database": BENCH_DB,
        "default_target_schema": SCHEMA,
        "load_method": "upsert",
    }
    return Tool("meltanolabs", [str(venv / "bin" / "target-postgres")], config)


TOOL_FACTORIES = {"hp": hp_tool, "limit": limit_tool, "meltanolabs": meltanolabs_tool}


# ---------------------------------------------------------------------------- measuring


@dataclass
class Measurement:
    """What one run of a tool cost the machine."""

    rc: int
    wall_s: float
    client_cpu_s: float
    peak_rss_mib: float
    server_cpu_s: float | None


def measure(argv: list[str], stdin: Path, workdir: Path, run: int, bench: Bench) -> Measurement:
    """Run argv with the stream on stdin: wall time, the child's rusage, the server's CPU."""
    stdout, stderr = workdir / f"stdout.{run}", workdir / f"stderr.{run}"
    cpu_before = server_cpu_s(bench.server.postmaster_pid)
    with stdin.open("rb") as fin, stdout.open("wb") as fout, stderr.open("wb") as ferr:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr)
        timer = threading.Timer(bench.args.timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    wait_for_disconnect(bench.admin)
    cpu_after = server_cpu_s(bench.server.postmaster_pid)
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Measurement(
        rc=proc.returncode,
        wall_s=wall,
        client_cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports KiB
        server_cpu_s=server_cpu,
    )


@dataclass
class Bench:
    """Everything a run needs: the arguments, the server, an admin connection, the stream."""

    args: argparse.Namespace
    psycopg: Any
    server: Server
    admin: Any
    stream: Path

    def run_once(self, tool: Tool, run: int) -> dict[str, Any]:
        """One measured run of `tool` on a fresh database; returns its result line."""
        args = self.args
        workdir = args.work_dir / f"{tool.name}-{args.variant}-{args.n}"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = list(tool.argv)
        if tool.config is not None:
            config_path = workdir / "config.json"
            config_path.write_text(json.dumps(tool.config, indent=2))
            argv += ["--config", str(config_path)]
        recreate_database(self.admin)
        m = measure(argv, self.stream, workdir, run, self)
        rows = count_rows(self.psycopg, self.server.admin_dsn, STREAMS[args.variant])
        ok = m.rc == 0 and rows == args.n
        wall = round(m.wall_s, 3)
        result = {
            "tool": tool.name,
            "variant": args.variant,
            "n": args.n,
            "run": run,
            "wall_s": wall,
            "rec_per_s": round(args.n / wall, 1),
            "client_cpu_s": round(m.client_cpu_s, 2),
            "server_cpu_s": None if m.server_cpu_s is None else round(m.server_cpu_s, 2),
            "peak_rss_mib": round(m.peak_rss_mib, 1),
            "ok": ok,
            "rc": m.rc,
            "rows": rows,
            "config_extra": tool.extra or None,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.report_run(result, workdir / f"stderr.{run}")
        return result

    def report_run(self, result: dict[str, Any], stderr: Path) -> None:
        """One progress line per run; for a failed run, where to look and stderr's last line."""
        line = f"{result['tool']} run {result['run']}: {result['wall_s']:.2f} s, "
        if result["ok"]:
            print(line + f"{result['rec_per_s']:,.0f} records/s, ok", flush=True)
            return
        rows = result["rows"]
        found = "no table" if rows is None else f"{rows} of {result['n']} rows"
        print(line + f"FAILED (exit {result['rc']}, {found}; see {stderr})")
        tail = stderr.read_text(errors="replace").strip().splitlines()[-1:]
        if tail:
            print(f"  last stderr line: {tail[0][:300]}", flush=True)


# ---------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table, '—' when unknown."""
    return "—" if value is None else f"{value:,.{digits}f}"


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    """Median of one field over runs, ignoring unknown values."""
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def summary_table(results: list[dict[str, Any]], n: int) -> str:
    """Markdown table of medians over the ok runs of each tool, plus a note per failed tool."""
    by_tool: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_tool.setdefault(r["tool"], []).append(r)
    ok = {tool: [r for r in runs if r["ok"]] for tool, runs in by_tool.items()}
    walls = {tool: median_of(runs, "wall_s") for tool, runs in ok.items()}
    rates = {tool: n / wall if wall else None for tool, wall in walls.items()}
    limit_rate = rates.get("limit")
    lines = [
        "| tool | N | median wall s | records/s | client CPU s | server CPU s | peak RSS MiB "
        "| ratio to limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, runs in ok.items():
        rate = rates[tool]
        cells = [
            tool,
            f"{n:,}",
            fmt(walls[tool]),
            fmt(rate, 0),
            fmt(median_of(runs, "client_cpu_s"), 1),
            fmt(median_of(runs, "server_cpu_s"), 1),
            fmt(max((r["peak_rss_mib"] for r in runs), default=None), 0),
            fmt(rate / limit_rate if rate and limit_rate else None),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"{tool}: {len(runs) - len(ok[tool])} of {len(runs)} runs failed (not in the medians)"
        for tool, runs in by_tool.items()
        if len(ok[tool]) < len(runs)
    ]
    return "\n".join([*lines, "", *notes] if notes else lines)


# ---------------------------------------------------------------------------- main


@contextlib.contextmanager
def machine_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock so two benchmarks never run (or drop `bench`) at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for {path}: another benchmark is running ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def benchmark(args: argparse.Namespace, psycopg: Any, admin_dsn: str) -> list[dict[str, Any]]:
    """Prepare the stream and the tools, then run every tool --repeat times."""
    server = describe_server(psycopg, admin_dsn)
    stream = ensure_stream(args.data_dir, args.variant, args.n)
    tools = [TOOL_FACTORIES[name](args, server) for name in args.tools]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with connect(psycopg, admin_dsn) as admin:
        bench = Bench(args, psycopg, server, admin, stream)
        for tool in tools:
            for run in range(1, args.repeat + 1):
                result = bench.run_once(tool, run)
                with args.out.open("a") as out:
                    out.write(json.dumps(result) + "\n")
                results.append(result)
    return results


def main() -> int:
    """Run the benchmark; 0 if every run was ok, 1 if some failed, 2 on a setup error."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the throwaway server
    args = parse_args()
    try:
        psycopg = import_psycopg(args.venv_dir)
        with machine_lock(args.lock_file):
            if args.dsn:
                results = benchmark(args, psycopg, args.dsn)
            else:
                with embedded_server(args.venv_dir) as dsn:
                    results = benchmark(args, psycopg, dsn)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print()
    print(summary_table(results, args.n))
    if args.hp_config_extra and "hp" in args.tools:
        print(f"\nhp config extra: {json.dumps(args.hp_config_extra)}")
    print(f"\nResults appended to {args.out}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
