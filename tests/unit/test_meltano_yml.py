"""meltano.yml describes the loader exactly as the target does, and ships a demo tap (SPEC §1)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Meltano kinds by JSON type, most general first: a setting that accepts several types gets the
# kind that holds them all (faker_config.seed takes a number, a string or a boolean: string).
KINDS = {
    "array": "array",
    "object": "object",
    "string": "string",
    "number": "decimal",
    "integer": "integer",
    "boolean": "boolean",
}


def _json_types(schema: dict[str, Any]) -> set[str]:
    """Every JSON type a setting's schema accepts, through oneOf/anyOf."""
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if alternatives is not None:
        return {t for alt in alternatives if isinstance(alt, dict) for t in _json_types(alt)}
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _meltano_settings(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Settings as Meltano names them: an object of fixed properties becomes dotted names, while
    a map keyed by the user (stream_maps, stream_load_methods) stays one object setting."""
    for name, schema in properties.items():
        if schema.get("properties") and not isinstance(schema.get("additionalProperties"), dict):
            yield from _meltano_settings(schema["properties"], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", schema


def _expected_kind(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "options"
    if schema.get("secret"):
        return "password"
    return next(kind for json_type, kind in KINDS.items() if json_type in _json_types(schema))


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    executable = Path(sys.executable).with_name("target-postgres-hp")
    completed = subprocess.run(
        [str(executable), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    parsed: dict[str, Any] = json.loads(completed.stdout)
    return parsed


@pytest.fixture(scope="module")
def reported(about: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(_meltano_settings(about["settings"]["properties"]))


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    return parsed


@pytest.fixture(scope="module")
def loader(project: dict[str, Any]) -> dict[str, Any]:
    (plugin,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres-hp"]
    return plugin


@pytest.fixture(scope="module")
def declared(loader: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [setting["name"] for setting in loader["settings"]]
    assert len(names) == len(set(names)), "a setting is declared twice in meltano.yml"
    return {setting["name"]: setting for setting in loader["settings"]}


def test_loader_declares_exactly_the_reported_settings(
    declared: dict[str, dict[str, Any]], reported: dict[str, dict[str, Any]]
) -> None:
    assert {
        "missing from meltano.yml": sorted(reported.keys() - declared.keys()),
        "unknown to the target": sorted(declared.keys() - reported.keys()),
    } == {"missing from meltano.yml": [], "unknown to the target": []}


def test_loader_setting_kinds_follow_the_schema(
    declared: dict[str, dict[str, Any]], reported: dict[str, dict[str, Any]]
) -> None:
    wrong = {
        name: (setting.get("kind"), _expected_kind(reported[name]))
        for name, setting in declared.items()
        if name in reported and setting.get("kind") != _expected_kind(reported[name])
    }
    assert wrong == {}, "setting: (kind in meltano.yml, kind expected)"


def test_secrets_are_sensitive_and_nothing_else_is(
    declared: dict[str, dict[str, Any]], reported: dict[str, dict[str, Any]]
) -> None:
    secrets = {name for name, schema in reported.items() if schema.get("secret")}
    sensitive = {name for name, setting in declared.items() if setting.get("sensitive") is True}
    assert secrets, "the target reports no secret settings at all"
    assert sensitive == secrets


def test_options_are_the_allowed_values(
    declared: dict[str, dict[str, Any]], reported: dict[str, dict[str, Any]]
) -> None:
    for name, schema in reported.items():
        options = [option["value"] for option in declared.get(name, {}).get("options", [])]
        assert options == schema.get("enum", []), name


def test_descriptions_are_the_targets_and_labels_are_set(
    declared: dict[str, dict[str, Any]], reported: dict[str, dict[str, Any]]
) -> None:
    for name in declared.keys() & reported.keys():
        assert declared[name].get("description") == reported[name].get("description"), name
        label = declared[name].get("label")
        assert isinstance(label, str), name
        assert label.strip(), name


def test_no_setting_carries_a_default(declared: dict[str, dict[str, Any]]) -> None:
    # Meltano passes a setting's `value` as if the user had set it: `schema: public` would then
    # contradict a user's `default_target_schema`, and `port` a `sqlalchemy_url`. The target
    # applies its own defaults.
    assert [name for name, setting in declared.items() if "value" in setting] == []


def test_capabilities_are_the_reported_ones(loader: dict[str, Any], about: dict[str, Any]) -> None:
    assert sorted(loader["capabilities"]) == sorted(about["capabilities"])


def test_demo_extractor_reads_keyed_records_from_the_repository(project: dict[str, Any]) -> None:
    (tap,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-jsonl"]
    config = tap["config"]
    assert config["path"].startswith("${MELTANO_PROJECT_ROOT}/")
    files = sorted(ROOT.glob(config["path"].removeprefix("${MELTANO_PROJECT_ROOT}/")))
    assert files, f"no demo file matches {config['path']}"
    records = [json.loads(line) for path in files for line in path.read_text("utf-8").splitlines()]
    assert records
    assert all(key in record for record in records for key in config["primary_keys"])
