"""The Meltano Hub definition lists what `target-postgres-hp --about` reports (SPEC §1).

Settings are named the way Meltano Hub names them: an object setting with fixed keys
(`ssl_mode`, `tunnel_method`, `ssh_tunnel`, `faker_config`) appears as its dotted leaves
(`ssl_mode.mode`), and an object keyed by names the user picks (`stream_maps`,
`stream_load_methods`, `stream_map_config`) appears whole, as `kind: object`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

EXECUTABLE = Path(sys.executable).with_name("target-postgres-hp")
HUB_FILE = Path(__file__).parents[2] / "hub" / "loaders" / "target-postgres-hp.yml"

#: Settings whose default the Hub file leaves out on purpose: Meltano passes defaults to the
#: target, and these would contradict an alias (sqlalchemy_url's port, default_target_schema,
#: ssl_enable) that a user sets.
#: Settings whose default Meltano must not pass: the target applies it, or (namespace settings)
#: an unset value means something (default_target_schema implies destination; Meltano would
#: expand `${SOURCE_NAMESPACE}` as an environment variable). table_layout: a passed
#: raw_and_final would contradict a user's disable_type_dedupe.
DEFAULTS_LEFT_TO_THE_TARGET = frozenset(
    {"port", "schema", "ssl", "namespace_definition", "namespace_format", "table_layout"}
)

#: Meltano setting kind of each JSON schema type.
KIND_OF_TYPE = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}


@cache
def about() -> dict[str, Any]:
    """What the installed CLI reports about itself."""
    completed = subprocess.run(
        [str(EXECUTABLE), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


@cache
def hub() -> dict[str, Any]:
    """The Hub definition file, parsed."""
    result: dict[str, Any] = yaml.safe_load(HUB_FILE.read_text(encoding="utf-8"))
    return result


def _leaves(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(Hub name, schema) of each setting: fixed-key objects unfold into dotted leaves."""
    for name, schema in properties.items():
        children = schema.get("properties")
        if children and not isinstance(schema.get("additionalProperties"), dict):
            yield from _leaves(children, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", schema


def about_settings() -> dict[str, dict[str, Any]]:
    """Every setting of `--about`, by its Hub name."""
    return dict(_leaves(about()["settings"]["properties"]))


def hub_settings() -> dict[str, dict[str, Any]]:
    """Every setting of the Hub file, by name."""
    return {setting["name"]: setting for setting in hub()["settings"]}


def expected_kind(schema: dict[str, Any]) -> str | None:
    """The Hub kind of a setting; None when its schema has no single type (anyOf, oneOf)."""
    if schema.get("secret"):
        return "password"
    if "enum" in schema:
        return "options"
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    types = [kind for kind in types if kind != "null"]
    return KIND_OF_TYPE[types[0]] if types else None


def test_hub_names_the_target() -> None:
    definition = hub()
    assert definition["name"] == about()["name"]
    assert definition["executable"] == about()["name"]
    assert definition["namespace"] == "target_postgres_hp"


def test_every_setting_is_listed_once() -> None:
    names = [setting["name"] for setting in hub()["settings"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"listed twice in {HUB_FILE.name}: {duplicates}"
    reported = set(about_settings())
    missing = sorted(reported - set(names))
    unknown = sorted(set(names) - reported)
    assert not missing, f"settings of --about missing from {HUB_FILE.name}: {missing}"
    assert not unknown, f"settings in {HUB_FILE.name} that --about does not report: {unknown}"


def test_capabilities_match() -> None:
    assert sorted(hub()["capabilities"]) == sorted(about()["capabilities"])


def test_sensitive_exactly_on_secrets() -> None:
    secrets = {name for name, schema in about_settings().items() if schema.get("secret")}
    sensitive = {name for name, setting in hub_settings().items() if setting.get("sensitive")}
    assert sensitive == secrets


def test_labels_and_descriptions() -> None:
    bare = [
        name
        for name, setting in hub_settings().items()
        if not (setting.get("label") and setting.get("description"))
    ]
    assert not bare, f"settings without a label or a description: {bare}"


def test_kinds() -> None:
    hub_kinds = {name: setting.get("kind") for name, setting in hub_settings().items()}
    wrong = {
        name: (hub_kinds.get(name), kind)
        for name, schema in about_settings().items()
        if (kind := expected_kind(schema)) is not None and hub_kinds.get(name) != kind
    }
    assert not wrong, f"kinds (in the Hub file, expected): {wrong}"


def test_options_are_the_enum_values() -> None:
    hub_options = {
        name: [option["value"] for option in setting.get("options", [])]
        for name, setting in hub_settings().items()
    }
    enums = {name: schema.get("enum", []) for name, schema in about_settings().items()}
    assert hub_options == enums


def test_defaults_mirror_the_target() -> None:
    hub_values = {
        name: setting["value"] for name, setting in hub_settings().items() if "value" in setting
    }
    defaults = {
        name: schema["default"]
        for name, schema in about_settings().items()
        if schema.get("default") is not None and name not in DEFAULTS_LEFT_TO_THE_TARGET
    }
    assert hub_values == defaults


def _pyproject_url(name: str) -> str:
    """A `[project.urls]` entry of pyproject.toml (read without tomllib, which 3.10 lacks)."""
    text = (HUB_FILE.parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    urls = text.split("[project.urls]", 1)[1].split("\n[", 1)[0]
    found = re.search(rf'^{name} = "([^"]+)"$', urls, re.MULTILINE)
    assert found, f"pyproject.toml has no {name} URL"
    return found[1]


def test_install_paths_name_one_repository() -> None:
    """The package is not on PyPI: Meltano installs it from the repository, with a PEP 508
    requirement without spaces (Meltano splits pip_url on whitespace), and the README and
    getting-started pages give the same URL."""
    repository = _pyproject_url("Repository")
    definition = hub()
    assert definition["repo"] == repository
    assert definition["docs"].startswith(repository)
    requirement = f"target-postgres-hp[embedded]@git+{repository}.git"
    assert definition["pip_url"] == requirement
    root = HUB_FILE.parents[2]
    for page in (root / "README.md", root / "docs" / "getting-started.md"):
        text = page.read_text(encoding="utf-8")
        assert f"pipx install '{requirement}'" in text, page.name
        assert f"git clone {repository}.git" in text, page.name
