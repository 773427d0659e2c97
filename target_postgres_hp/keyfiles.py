"""Certificate and key material that libpq or SSH needs as files, kept private and temporary.

Settings accept PEM text or a file path. Text is written into a directory made for this run
(mode 0700, files 0600) that is removed when the run ends, also on error or SIGTERM. Client
keys given as paths are copied there too, so libpq's permission check on key files never
depends on how the user's file happens to be stored.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from target_postgres_hp.errors import KeyMaterialError, setting_problem

_PEM_MARKER = "-----BEGIN"


def is_pem_text(value: str) -> bool:
    """True when the value holds PEM (or OpenSSH) text rather than a file path."""
    return _PEM_MARKER in value


class KeyFiles:
    """A private directory of material files that exists for one run."""

    def __init__(self) -> None:
        self._directory: Path | None = None
        atexit.register(self.close)

    @property
    def directory(self) -> Path:
        """The private directory, created on first use."""
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="target-postgres-hp-"))
            self._directory.chmod(0o700)
        return self._directory

    @property
    def made(self) -> Path | None:
        """The private directory if this run made it, else None."""
        return self._directory

    def write(self, name: str, content: str | bytes) -> Path:
        """Write `content` to a new 0600 file in the private directory."""
        path = self.directory / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return path

    def read_setting(self, setting: str, value: str) -> str:
        """The text of a setting that is PEM text or a path to a readable file."""
        if is_pem_text(value):
            return value
        path = Path(value).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not text"
            raise KeyMaterialError(
                setting_problem(
                    setting,
                    f"names the file {str(path)!r}, which cannot be read ({reason})",
                    "give PEM text or the path of a readable file",
                )
            ) from None

    def as_file(self, setting: str, value: str, name: str, *, private: bool) -> Path:
        """A file holding the setting's material: the user's own file for public material
        given as a path, else a private copy."""
        if not is_pem_text(value) and not private:
            path = Path(value).expanduser()
            if not path.is_file():
                raise KeyMaterialError(
                    setting_problem(
                        setting,
                        f"names the file {str(path)!r}, which does not exist",
                        "give PEM text or the path of a readable file",
                    )
                )
            return path
        return self.write(name, self.read_setting(setting, value))

    def close(self) -> None:
        """Remove the directory and everything in it."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
