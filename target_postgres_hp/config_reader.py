"""Reading settings out of a user's config: values with their defaults, aliases, and every
problem found on the way, one sentence each (setting, problem, fix)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import jsonschema

from target_postgres_hp.errors import setting_problem
from target_postgres_hp.setting_names import is_secret, name_problems
from target_postgres_hp.settings_schema import CONFIG_SCHEMA, DEFAULTS


class ConfigReader:
    """One config and the problems found in it so far, in the order they were found."""

    def __init__(self, config: Mapping[str, Any], problems: list[str] | None = None) -> None:
        """`problems`: the list of a reader that hands part of its work to this one, so that
        both report into one list, in order."""
        self.config = dict(config)
        self.problems: list[str] = [] if problems is None else problems

    def problem(self, setting: str, problem: str, fix: str) -> None:
        self.problems.append(setting_problem(setting, problem, fix))

    def value(self, name: str, *, empty_is_unset: bool = False) -> Any:
        """A top-level setting's value, or its default when unset or null (or empty, for
        settings where the destination treats an empty value as unset)."""
        value = self.config.get(name)
        if value is None or (empty_is_unset and value == ""):
            return DEFAULTS.get(name)
        return value

    def check_schema(self) -> None:
        """The problems `CONFIG_SCHEMA` finds (types, values, ranges), then unknown names."""
        validator = jsonschema.Draft7Validator(CONFIG_SCHEMA)
        for error in sorted(validator.iter_errors(self.config), key=lambda e: e.json_path):
            self.problems.append(_describe_schema_error(error))
        self.problems.extend(name_problems(self.config))

    def aliased(self, primary: str, alias: str) -> Any:
        """Value of a setting given under its own name or its alias, refusing a contradiction."""
        value, alias_value = self.config.get(primary), self.config.get(alias)
        if value is not None and alias_value is not None and value != alias_value:
            self.problem(
                alias,
                f"contradicts `{primary}`",
                f"set only one of {primary} and {alias} (its alias)",
            )
        return value if value is not None else alias_value


def _describe_schema_error(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "config"
    shown = "" if is_secret(path) else f" (got {error.instance!r})"
    kind = error.validator
    if kind == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(str(name) for name in names if name != "null")
        article = "an" if wanted[0] in "aeiou" else "a"
        return setting_problem(path, f"has the wrong type{shown}", f"give {article} {wanted}")
    if kind == "enum":
        choices = ", ".join(str(choice) for choice in cast(list[object], error.validator_value))
        return setting_problem(path, f"has an unknown value{shown}", f"use one of {choices}")
    if kind in {"minimum", "maximum"}:
        subschema = cast(dict[str, object], error.schema)
        low, high = subschema.get("minimum"), subschema.get("maximum")
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        return setting_problem(path, f"is out of range{shown}", f"give a number {bounds}")
    return setting_problem(path, f"is invalid{shown}", error.message)
