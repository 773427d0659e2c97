"""Which local files a BATCH manifest may name (SPEC §9), and opening them safely.

A manifest comes from the tap's output, so it must not make the target read what the tap could
not: an entry must be a regular file (never a device, FIFO, socket or directory, which could
block the run or feed it without end), under `batch_root` when that is set (after symlinks and
`..` are resolved), outside /proc and /sys, and never one of the run's own files: its `--config`
files, the key and certificate files its settings name, and the private directory of its key
material (`keyfiles.KeyFiles`). Own files are known by device and inode, so a link or another
path to one is refused too.

A file is checked by path, opened without blocking and without following a last symlink, and
checked again by what was opened (its descriptor's type and inode, and on Linux its real path),
so a file swapped between the check and the open is refused as well.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from target_postgres_hp.config import Settings
from target_postgres_hp.keyfiles import is_pem_text

#: Pseudo filesystems whose regular files are the kernel's interfaces (a process's environment,
#: its memory), never batch files.
SYSTEM_DIRECTORIES = (Path("/proc"), Path("/sys"))

#: Open flags: never wait for a FIFO's writer or take a terminal, never follow a last symlink.
_OPEN_FLAGS = (
    os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
)

#: What a file that is not regular is, for the refusal.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)

#: libpq parameters of `jdbc_url_params` that name key or certificate files.
_URL_KEY_FILES = ("sslrootcert", "sslcert", "sslkey")


class FileRefused(Exception):
    """A manifest entry the target will not read; the message says why."""


@dataclass(frozen=True)
class BatchFiles:
    """The rules for one run's manifest entries."""

    #: `batch_root`, resolved: the one directory (and below) entries may name; None: any.
    root: Path | None = None
    #: The run's own files by (device, inode), each with what it is.
    own_files: Mapping[tuple[int, int], str] = field(default_factory=dict)
    #: Directories of the run's own nothing under which may be named, with what each is.
    own_directories: tuple[tuple[Path, str], ...] = ()

    @classmethod
    def of_run(
        cls, settings: Settings, config_files: Iterable[str], key_directory: Path | None
    ) -> BatchFiles:
        """The rules for a run with these settings, `--config` files and private key
        directory (None when the run wrote no key material)."""
        named = [(path, "a --config file of this run") for path in config_files]
        material = (
            ("ssl_mode.ca_certificate", settings.ssl.ca_certificate),
            ("ssl_mode.client_certificate", settings.ssl.client_certificate),
            ("ssl_mode.client_key", settings.ssl.client_key),
            ("tunnel_method.ssh_key", settings.tunnel.ssh_key),
        )
        for setting, value in material:
            if value and not is_pem_text(value):
                named.append((value, f"the file of setting {setting}"))
        for key in _URL_KEY_FILES:
            value = settings.url_params.libpq.get(key)
            if value:
                named.append((value, f"the file of {key} in setting jdbc_url_params"))
        own: dict[tuple[int, int], str] = {}
        directories: list[tuple[Path, str]] = []
        if key_directory is not None:
            what = "in this run's private directory of key material"
            directories.append((Path(os.path.realpath(key_directory)), what))
            named.extend((str(path), what) for path in _files_in(key_directory))
        for path, what in named:
            try:
                status = os.stat(Path(path).expanduser())
            except (OSError, ValueError):
                continue  # a file that does not exist cannot be read either
            own.setdefault((status.st_dev, status.st_ino), what)
        return cls(settings.batch_root, own, tuple(directories))

    def open(self, path: Path) -> IO[bytes]:
        """The file at `path` opened for reading, or FileRefused saying why it may not be
        read; OSError when it cannot be (missing, no permission)."""
        real = Path(os.path.realpath(path))
        self._check_place(real)
        self._check_kind(os.stat(real))
        descriptor = os.open(real, _OPEN_FLAGS)
        try:
            self._check_kind(os.fstat(descriptor))
            opened = _descriptor_path(descriptor)
            if opened is not None:
                self._check_place(opened)
            return os.fdopen(descriptor, "rb")
        except BaseException:
            os.close(descriptor)
            raise

    def _check_place(self, real: Path) -> None:
        if self.root is not None and not real.is_relative_to(self.root):
            raise FileRefused(
                f"is {real}, outside batch_root {self.root}, the one directory batch files"
                " may be in"
            )
        for system in SYSTEM_DIRECTORIES:
            if real.is_relative_to(system):
                raise FileRefused(f"is {real}, a file of the system's {system}, not a batch file")
        for directory, what in self.own_directories:
            if real.is_relative_to(directory):
                raise FileRefused(f"is {what}, which a manifest may never name")

    def _check_kind(self, status: os.stat_result) -> None:
        if not stat.S_ISREG(status.st_mode):
            kind = next((what for test, what in _KINDS if test(status.st_mode)), "not a file")
            raise FileRefused(f"is {kind}, not a regular file")
        what = self.own_files.get((status.st_dev, status.st_ino))
        if what is not None:
            raise FileRefused(f"is {what}, which a manifest may never name")


def _files_in(directory: Path) -> list[Path]:
    """The files in a directory (none if it is gone)."""
    try:
        return [entry for entry in directory.iterdir() if entry.is_file()]
    except OSError:
        return []


def _descriptor_path(descriptor: int) -> Path | None:
    """The real path of an open file (Linux), or None where the system cannot tell."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        return None
