"""The names of settings: which are ours, which are secret, which belong to other loaders, and
the closest valid name for a misspelled one, in a config or in an environment variable."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from singer_sdk.helpers.capabilities import (
    ACTIVATE_VERSION_CONFIG,
    FLATTENING_CONFIG,
    STREAM_MAPS_CONFIG,
)

from target_postgres_hp.errors import setting_problem
from target_postgres_hp.settings_schema import CONFIG_SCHEMA

logger = logging.getLogger("target-postgres-hp")

SECRET_PATHS = frozenset(
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
SDK_SETTINGS = frozenset(
    name
    for builtin in (STREAM_MAPS_CONFIG, FLATTENING_CONFIG, ACTIVATE_VERSION_CONFIG)
    for name in builtin["properties"]
)

#: Settings of other Postgres loaders (MeltanoLabs, Airbyte) and singer-sdk settings of
#: capabilities the target does not declare: no meaning here, accepted with a log line each.
FOREIGN_SETTINGS = frozenset(
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


#: Every top-level setting name the target accepts.
TOP_LEVEL_NAMES = frozenset(CONFIG_SCHEMA["properties"]) | SDK_SETTINGS
#: The names accepted inside each object setting.
BLOCK_NAMES = {
    block: frozenset(CONFIG_SCHEMA["properties"][block]["properties"])
    for block in ("ssl_mode", "tunnel_method", "ssh_tunnel")
}


def is_secret(path: str) -> bool:
    """True when the setting at `path` (dotted inside object settings) holds a secret."""
    return path in SECRET_PATHS or path.split(".")[0] in {"password", "sqlalchemy_url"}


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name a mistyped `name` most likely meant: a close spelling, else the same
    letters in another case; None when nothing is close."""
    candidates = sorted(valid)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return close[0]
    return next((other for other in candidates if other.lower() == name.lower()), None)


def name_problems(config: Mapping[str, Any]) -> list[str]:
    """Refuse a setting name that is not ours, naming the closest valid one (a misspelled
    `host` must never fall back to the embedded server); log each setting of another
    loader that has no meaning here."""
    problems = []
    for key in sorted(config):
        if key in FOREIGN_SETTINGS:
            logger.info("Setting %s belongs to another loader and has no effect here", key)
        elif key not in TOP_LEVEL_NAMES:
            problems.append(_unknown(key, key, TOP_LEVEL_NAMES))
    for block, names in BLOCK_NAMES.items():
        value = config.get(block)
        if isinstance(value, dict):
            for key in sorted(value):
                if key not in names:
                    problems.append(_unknown(f"{block}.{key}", key, names, prefix=f"{block}."))
    return problems


def _unknown(path: str, key: str, valid: Iterable[str], *, prefix: str = "") -> str:
    close = closest(key, valid)
    fix = (
        f"rename it to {prefix}{close} (the closest setting) or remove it"
        if close
        else "remove it (target-postgres-hp --about lists every setting)"
    )
    return setting_problem(path, "is not a setting of this target", fix)


#: The prefix of the environment variables `--config ENV` reads (singer-sdk's rule).
ENV_PREFIX = "TARGET_POSTGRES_HP_"


def unknown_environment_settings(environ: Mapping[str, str]) -> list[str]:
    """With `--config ENV`: one sentence per `TARGET_POSTGRES_HP_*` variable that names no
    setting (the SDK would ignore it, and a misspelled host would load into the embedded
    server). Names with a second underscore after the prefix (Meltano's `..._<extra>`) are
    not settings and are left alone."""
    known = {re.sub(r"\W", "_", name.upper()): name for name in TOP_LEVEL_NAMES | FOREIGN_SETTINGS}
    problems = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        suffix = variable.removeprefix(ENV_PREFIX)
        if not suffix or suffix.startswith("_") or suffix in known:
            continue
        close = closest(suffix, known)
        fix = (
            f"rename it to {ENV_PREFIX}{close} (setting {known[close]}) or unset it"
            if close
            else "unset it (target-postgres-hp --about lists every setting)"
        )
        problems.append(f"Environment variable {variable} names no setting of this target: {fix}.")
    return problems
