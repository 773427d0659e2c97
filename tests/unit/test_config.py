"""Settings: defaults, aliases, and one sentence per mistake (SPEC §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spec_settings import ALIASES, SPEC_SETTINGS

from target_postgres_hp.config import (
    CONFIG_SCHEMA,
    Settings,
    is_local_host,
    unknown_environment_settings,
)
from target_postgres_hp.errors import ConfigError

BASE: dict[str, Any] = {"host": "db.example.com", "username": "loader", "password": "pw"}


def settings(**overrides: Any) -> Settings:
    return Settings.from_config({**BASE, **overrides})


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_config(config)
    return caught.value.problems


def test_defaults() -> None:
    s = settings()
    assert s.port == "5432"
    assert s.database is None  # libpq then uses the user name
    assert s.schemas == ("public",)
    assert s.default_schema == "public"
    assert s.raw_data_schema == "airbyte_internal"
    assert s.ssl.mode == "require"
    assert s.tunnel.method == "NO_TUNNEL"
    assert s.tunnel.enabled is False
    assert s.drop_cascade is False
    assert s.load_method is None
    assert s.table_layout == "raw_and_final"
    assert s.cdc_deletion_mode == "hard_delete"
    assert s.ignore_stream_namespace is False
    assert s.batch_size_rows == 20_000
    assert s.url_params.libpq == {"connect_timeout": "60"}
    assert s.embedded is False
    assert s.embedded_data_directory == Path(".target-postgres-hp/pgdata")


def test_no_host_means_embedded() -> None:
    s = Settings.from_config({})
    assert s.embedded is True
    assert s.host is None


def test_schema_list_keeps_case_and_order() -> None:
    s = settings(schema=" Sales , public,,Analytics ")
    assert s.schemas == ("Sales", "public", "Analytics")
    assert s.default_schema == "Sales"


def test_empty_schema_list_is_refused() -> None:
    (message,) = problems({**BASE, "schema": " , "})
    assert message.startswith("Setting `schema` names no schema")


@pytest.mark.parametrize(
    ("alias", "value", "attribute", "expected"),
    [
        ("user", "bob", "username", "bob"),
        ("default_target_schema", "melty", "schemas", ("melty",)),
    ],
)
def test_meltanolabs_aliases(alias: str, value: Any, attribute: str, expected: Any) -> None:
    config = {k: v for k, v in BASE.items() if not (alias == "user" and k == "username")}
    s = Settings.from_config({**config, alias: value})
    assert getattr(s, attribute) == expected


def test_alias_contradiction_is_refused() -> None:
    (message,) = problems({**BASE, "user": "someone_else"})
    assert "`user` contradicts `username`" in message
    assert "set only one of username and user" in message


def test_ssl_aliases() -> None:
    s = settings(
        ssl_mode="verify-full",
        ssl_certificate_authority="ca.pem",
        ssl_client_certificate="c.pem",
        ssl_client_private_key="k.pem",
    )
    assert s.ssl.mode == "verify-full"
    assert (s.ssl.ca_certificate, s.ssl.client_certificate, s.ssl.client_key) == (
        "ca.pem",
        "c.pem",
        "k.pem",
    )


def test_ssl_false_means_disable_on_loopback() -> None:
    s = Settings.from_config({**BASE, "host": "127.0.0.1", "ssl": False})
    assert s.ssl.mode == "disable"
    s = Settings.from_config({**BASE, "host": "localhost", "ssl_enable": False})
    assert s.ssl.mode == "disable"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_unencrypted_modes_refused_for_remote_hosts(mode: str) -> None:
    (message,) = problems({**BASE, "ssl_mode": {"mode": mode}})
    assert message == (
        f"Setting `ssl_mode.mode` is {mode}, which may send data unencrypted to "
        "db.example.com: use require, verify-ca or verify-full, or reach the server through "
        "tunnel_method (SSH)."
    )


def test_ssl_false_is_refused_for_remote_hosts() -> None:
    (message,) = problems({**BASE, "ssl": False})
    assert "ssl_mode.mode` is disable" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "/var/run/pg"])
def test_unencrypted_modes_allowed_on_loopback(host: str) -> None:
    for mode in ("disable", "allow", "prefer"):
        assert settings(host=host, ssl_mode={"mode": mode}).ssl.mode == mode


def test_unencrypted_mode_allowed_through_a_tunnel() -> None:
    s = settings(
        ssl_mode={"mode": "disable"},
        tunnel_method={
            "tunnel_method": "SSH_PASSWORD_AUTH",
            "tunnel_host": "bastion",
            "tunnel_user": "me",
            "tunnel_user_password": "secret",
        },
    )
    assert s.ssl.mode == "disable"
    assert s.tunnel.enabled


def test_is_local_host() -> None:
    assert is_local_host(None)
    assert is_local_host("127.0.0.1,localhost")
    assert not is_local_host("127.0.0.1,10.0.0.5")
    assert not is_local_host("db.internal")
    assert not is_local_host("192.168.1.1")


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verify_modes_need_a_ca(mode: str) -> None:
    (message,) = problems({**BASE, "ssl_mode": {"mode": mode}})
    assert message == (
        f"Setting `ssl_mode.ca_certificate` is missing but ssl_mode.mode is {mode}: give the "
        "CA certificate as PEM text or a file path."
    )


def test_client_key_without_certificate() -> None:
    (message,) = problems({**BASE, "ssl_mode": {"mode": "require", "client_key": "k"}})
    assert message.startswith("Setting `ssl_mode.client_certificate` is missing")


def test_unknown_ssl_mode() -> None:
    (message,) = problems({**BASE, "ssl_mode": {"mode": "sometimes"}})
    assert message.startswith("Setting `ssl_mode.mode` has an unknown value (got 'sometimes')")
    assert "disable, allow, prefer, require, verify-ca, verify-full" in message


def test_wrong_type_names_setting_and_fix() -> None:
    (message,) = problems({**BASE, "port": [5432]})
    assert message == "Setting `port` has the wrong type (got [5432]): give a string or integer."


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("db", 6432, "6432"),
        ("db", "6432", "6432"),
        ("a,b", "5432", "5432"),
        ("a,b", "5432, 5433", "5432,5433"),
        ("a,b,c", 5432, "5432"),
    ],
)
def test_host_lists_take_one_port_or_one_per_host(host: str, port: object, expected: str) -> None:
    """SPEC §12: host and port as libpq takes them."""
    s = Settings.from_config({**BASE, "host": host, "port": port})
    assert (s.host, s.port) == (host, expected)


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [
        (
            "db",
            "five",
            "Setting `port` is not a port number or a list of them (got 'five'): give a number"
            " from 1 to 65535, or one per host separated by commas.",
        ),
        (
            "a,b",
            "5432,70000",
            "Setting `port` is not a port number or a list of them (got '5432,70000'): give a"
            " number from 1 to 65535, or one per host separated by commas.",
        ),
        (
            "a,b,c",
            "5432,5433",
            "Setting `port` lists 2 ports for 3 hosts: give one port for every host, or one for"
            " all.",
        ),
    ],
)
def test_a_port_list_that_does_not_fit_is_refused(host: str, port: str, message: str) -> None:
    assert problems({**BASE, "host": host, "port": port}) == [message]


def test_a_host_list_cannot_go_through_a_tunnel() -> None:
    tunnel = {
        "tunnel_method": "SSH_PASSWORD_AUTH",
        "tunnel_host": "bastion",
        "tunnel_user": "me",
        "tunnel_user_password": "pw",
    }
    (message,) = problems({**BASE, "host": "a,b", "tunnel_method": tunnel})
    assert message.startswith("Setting `host` lists several hosts, which an SSH tunnel")


def test_out_of_range_port() -> None:
    (message,) = problems({**BASE, "port": 70000})
    assert message == "Setting `port` is out of range (got 70000): give a number from 1 to 65535."


def test_secret_value_never_in_message() -> None:
    messages = problems({**BASE, "password": 123456789})
    assert messages == ["Setting `password` has the wrong type: give a string."]
    assert "123456789" not in "".join(messages)


def test_every_mistake_is_reported_once() -> None:
    messages = problems(
        {**BASE, "load_method": "merge", "cdc_deletion_mode": "forget", "batch_size_rows": 0}
    )
    assert len(messages) == 3
    assert any(m.startswith("Setting `load_method` has an unknown value") for m in messages)
    assert any(m.startswith("Setting `cdc_deletion_mode`") for m in messages)
    assert any(m.startswith("Setting `batch_size_rows` is out of range") for m in messages)


def test_host_without_username() -> None:
    (message,) = problems({"host": "db.example.com"})
    assert message == "Setting `username` is missing: name the role to log in as."


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("append", "append"),
        ("append-only", "append"),
        ("upsert", "append-dedup"),
        ("append-dedup", "append-dedup"),
        ("overwrite", "overwrite"),
    ],
)
def test_load_method_names(given: str, expected: str) -> None:
    s = settings(load_method=given)
    assert s.load_method_for("any", has_keys=False) == expected


def test_load_method_defaults_by_key_presence_and_overrides() -> None:
    s = settings(stream_load_methods={"users": "overwrite", "events": "upsert"})
    assert s.load_method_for("orders", has_keys=True) == "append-dedup"
    assert s.load_method_for("orders", has_keys=False) == "append"
    assert s.load_method_for("users", has_keys=True) == "overwrite"
    assert s.load_method_for("events", has_keys=False) == "append-dedup"


def test_stream_load_method_unknown_value() -> None:
    (message,) = problems({**BASE, "stream_load_methods": {"users": "replace"}})
    assert message.startswith("Setting `stream_load_methods.users` has an unknown value")


def test_key_tunnel_needs_host_user_and_key() -> None:
    messages = problems({**BASE, "tunnel_method": {"tunnel_method": "SSH_KEY_AUTH"}})
    assert messages == [
        "Setting `tunnel_method.tunnel_host` is missing for SSH_KEY_AUTH: give the bastion's "
        "host name.",
        "Setting `tunnel_method.tunnel_user` is missing for SSH_KEY_AUTH: give the SSH user name.",
        "Setting `tunnel_method.ssh_key` is missing for SSH_KEY_AUTH: give the private key.",
    ]


def test_password_tunnel_needs_password() -> None:
    (message,) = problems(
        {
            **BASE,
            "tunnel_method": {
                "tunnel_method": "SSH_PASSWORD_AUTH",
                "tunnel_host": "b",
                "tunnel_user": "u",
            },
        }
    )
    assert message == (
        "Setting `tunnel_method.tunnel_user_password` is missing for SSH_PASSWORD_AUTH: give "
        "the SSH user's password."
    )


def test_meltanolabs_ssh_tunnel_alias() -> None:
    s = settings(
        ssh_tunnel={
            "enable": True,
            "host": "bastion",
            "port": 2222,
            "username": "me",
            "private_key": "KEY",
            "private_key_password": "phrase",
        }
    )
    assert s.tunnel.method == "SSH_KEY_AUTH"
    assert (s.tunnel.host, s.tunnel.port, s.tunnel.user) == ("bastion", 2222, "me")
    assert (s.tunnel.ssh_key, s.tunnel.ssh_key_password) == ("KEY", "phrase")
    assert settings(ssh_tunnel={"enable": False, "host": "x"}).tunnel.enabled is False


def test_tunnel_port_defaults_to_22() -> None:
    s = settings(
        tunnel_method={
            "tunnel_method": "SSH_KEY_AUTH",
            "tunnel_host": "b",
            "tunnel_user": "u",
            "ssh_key": "K",
        }
    )
    assert s.tunnel.port == 22


def test_sqlalchemy_url_alias() -> None:
    s = Settings.from_config(
        {"sqlalchemy_url": "postgresql+psycopg://bob:s%40cret@db.example.com:6543/sales"}
    )
    assert (s.host, s.port, s.username, s.password, s.database) == (
        "db.example.com",
        "6543",
        "bob",
        "s@cret",
        "sales",
    )
    s = Settings.from_config({"sqlalchemy_url": "postgresql://bob@localhost/db?sslmode=disable"})
    assert s.ssl.mode == "disable"


def test_sqlalchemy_url_contradiction_and_secret_kept_out() -> None:
    messages = problems({**BASE, "sqlalchemy_url": "postgresql://bob:hunter2@other.example.com/db"})
    assert "Setting `host` contradicts sqlalchemy_url: set host in one place only." in messages
    assert all("hunter2" not in message for message in messages)


def test_sqlalchemy_url_other_backend() -> None:
    (message,) = problems({"sqlalchemy_url": "mysql://u:p@h/db"})
    assert message == "Setting `sqlalchemy_url` names the backend 'mysql': use a postgresql:// URL."


def test_jdbc_params_parsed_during_validation() -> None:
    s = settings(jdbc_url_params="connectTimeout=5&ApplicationName=my%20app")
    assert s.url_params.libpq == {"connect_timeout": "5", "application_name": "my app"}
    (message,) = problems({**BASE, "jdbc_url_params": "fooBar=1"})
    assert message.startswith("Setting `jdbc_url_params` has the unknown key 'fooBar'")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"hostname": "db.example.com"},
            "Setting `hostname` is not a setting of this target: rename it to host (the closest"
            " setting) or remove it.",
        ),
        (
            {"HOST": "db.example.com"},
            "Setting `HOST` is not a setting of this target: rename it to host (the closest"
            " setting) or remove it.",
        ),
        (
            {"passwrod": "x"},
            "Setting `passwrod` is not a setting of this target: rename it to password (the"
            " closest setting) or remove it.",
        ),
        (
            {"ssl_mode": {"mode": "verify-ca", "ca_certificate": "x", "ca_cert": "y"}},
            "Setting `ssl_mode.ca_cert` is not a setting of this target: rename it to"
            " ssl_mode.ca_certificate (the closest setting) or remove it.",
        ),
        (
            {"tunnel_method": {"tunnel_method": "NO_TUNNEL", "tunel_host": "b"}},
            "Setting `tunnel_method.tunel_host` is not a setting of this target: rename it to"
            " tunnel_method.tunnel_host (the closest setting) or remove it.",
        ),
        (
            {"ssh_tunnel": {"enable": False, "hostname": "b"}},
            "Setting `ssh_tunnel.hostname` is not a setting of this target: rename it to"
            " ssh_tunnel.host (the closest setting) or remove it.",
        ),
        (
            {"qqqq": 1},
            "Setting `qqqq` is not a setting of this target: remove it (target-postgres-hp"
            " --about lists every setting).",
        ),
    ],
)
def test_unknown_setting_refused_with_closest_name(config: dict[str, Any], message: str) -> None:
    assert problems({**BASE, **config}) == [message]


def test_unknown_setting_reported_with_other_mistakes() -> None:
    messages = problems({**BASE, "hostnme": "x", "port": [5432]})
    assert any(m.startswith("Setting `hostnme` is not a setting") for m in messages)
    assert any(m.startswith("Setting `port` has the wrong type") for m in messages)


def test_other_loaders_settings_logged_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings(use_copy=True, hard_delete=False, batch_config={"encoding": {"format": "jsonl"}})
    lines = [
        r.getMessage() for r in caplog.records if "belongs to another loader" in r.getMessage()
    ]
    assert lines == [
        f"Setting {name} belongs to another loader and has no effect here"
        for name in ("batch_config", "hard_delete", "use_copy")
    ]


def test_sdk_settings_accepted() -> None:
    s = settings(
        stream_maps={"users": {"__alias__": "people"}},
        flattening_enabled=False,
        process_activate_version_messages=True,
    )
    assert s.host == BASE["host"]


def test_namespace_defaults() -> None:
    s = settings()
    assert (s.namespace_definition, s.namespace_format, s.stream_prefix) == (
        "source",
        "${SOURCE_NAMESPACE}",
        "",
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, {"public-users": ("public", "users"), "users": ("analytics", "users")}),
        (
            {"namespace_definition": "destination"},
            {"public-users": ("analytics", "users"), "db-sales-users": ("analytics", "users")},
        ),
        (
            {"namespace_definition": "custom", "namespace_format": "raw_${SOURCE_NAMESPACE}"},
            {"public-users": ("raw_public", "users"), "users": ("analytics", "users")},
        ),
        (
            {"namespace_definition": "custom", "namespace_format": "landing"},
            {"public-users": ("landing", "users"), "users": ("analytics", "users")},
        ),
        (
            {"stream_prefix": "src_"},
            {"public-users": ("public", "src_users"), "users": ("analytics", "src_users")},
        ),
        (
            {"ignore_stream_namespace": True, "namespace_definition": "custom"},
            {"public-users": ("analytics", "public-users"), "users": ("analytics", "users")},
        ),
        (
            {"ignore_stream_namespace": True, "stream_prefix": "p_"},
            {"sales-users": ("analytics", "p_sales-users")},
        ),
    ],
)
def test_placement(overrides: dict[str, Any], expected: dict[str, tuple[str, str]]) -> None:
    s = settings(schema="analytics,extra", **overrides)
    for stream, (schema, table) in expected.items():
        place = s.place(stream)
        assert (place.schema, place.table) == (schema, table), stream


def test_default_target_schema_implies_destination(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    s = settings(default_target_schema="analytics")
    assert s.namespace_definition == "destination"
    assert (s.place("public-users").schema, s.place("public-users").table) == (
        "analytics",
        "users",
    )
    assert "namespace_definition destination" in caplog.text
    explicit = settings(default_target_schema="analytics", namespace_definition="source")
    assert explicit.namespace_definition == "source"
    assert explicit.place("public-users").schema == "public"
    assert settings(schema="analytics").namespace_definition == "source"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"namespace_format": "x_${SOURCE_NAMESPACE}"},
            "Setting `namespace_format` is set but namespace_definition is source: set"
            " namespace_definition to custom to use it, or remove it.",
        ),
        (
            {"namespace_definition": "custom", "namespace_format": " "},
            "Setting `namespace_format` is empty: give a schema name, optionally with"
            " ${SOURCE_NAMESPACE} in it.",
        ),
        (
            {"namespace_definition": "custom", "namespace_format": "${NAMESPACE}_x"},
            "Setting `namespace_format` has the placeholder ${NAMESPACE}: use"
            " ${SOURCE_NAMESPACE}, the only one replaced.",
        ),
        (
            {"namespace_definition": "custom", "namespace_format": "$SOURCE_NAMESPACE"},
            "Setting `namespace_format` has $SOURCE_NAMESPACE, which is not replaced (it would"
            " be part of the schema name): write ${SOURCE_NAMESPACE}, with the dollar sign and"
            " the braces (in meltano.yml \\${SOURCE_NAMESPACE}, as Meltano would replace it).",
        ),
        (
            {"namespace_definition": "custom", "namespace_format": "raw_{source_namespace}"},
            "Setting `namespace_format` has {source_namespace}, which is not replaced (it would"
            " be part of the schema name): write ${SOURCE_NAMESPACE}, with the dollar sign and"
            " the braces (in meltano.yml \\${SOURCE_NAMESPACE}, as Meltano would replace it).",
        ),
        (
            {
                "namespace_definition": "custom",
                "namespace_format": "${SOURCE_NAMESPACE}_$source_namespace",
            },
            "Setting `namespace_format` has $source_namespace, which is not replaced (it would"
            " be part of the schema name): write ${SOURCE_NAMESPACE}, with the dollar sign and"
            " the braces (in meltano.yml \\${SOURCE_NAMESPACE}, as Meltano would replace it).",
        ),
        (
            {"namespace_definition": "elsewhere"},
            "Setting `namespace_definition` has an unknown value (got 'elsewhere'): use one of"
            " source, destination, custom.",
        ),
    ],
)
def test_namespace_setting_problems(overrides: dict[str, Any], message: str) -> None:
    assert problems({**BASE, **overrides}) == [message]


def test_default_namespace_format_accepted_in_every_mode() -> None:
    for definition in ("source", "destination"):
        s = settings(
            schema="analytics",
            namespace_format="${SOURCE_NAMESPACE}",
            namespace_definition=definition,
        )
        expected = "public" if definition == "source" else "analytics"
        assert s.place("public-users").schema == expected


def test_secrets_never_in_repr() -> None:
    s = settings(
        password="pw-secret",
        ssl_mode={"mode": "require", "client_key_password": "kp-secret"},
    )
    assert "pw-secret" not in repr(s)
    assert "kp-secret" not in repr(s)


def test_schema_marks_every_secret() -> None:
    properties = CONFIG_SCHEMA["properties"]
    assert properties["password"]["secret"] is True
    assert properties["sqlalchemy_url"]["secret"] is True
    for name in ("ca_certificate", "client_certificate", "client_key", "client_key_password"):
        assert properties["ssl_mode"]["properties"][name]["secret"] is True
    for name in ("ssh_key", "ssh_key_password", "tunnel_user_password"):
        assert properties["tunnel_method"]["properties"][name]["secret"] is True


def test_schema_documents_every_spec_setting() -> None:
    documented = {*SPEC_SETTINGS, "embedded_data_directory", "lock_wait_seconds", *ALIASES}
    assert documented <= set(CONFIG_SCHEMA["properties"])
    defaults = {name: CONFIG_SCHEMA["properties"][name].get("default") for name in documented}
    assert defaults["port"] == 5432
    assert defaults["schema"] == "public"
    assert defaults["raw_data_schema"] == "airbyte_internal"
    assert defaults["ssl"] is True
    assert defaults["ssl_mode"] == {"mode": "require"}
    assert defaults["tunnel_method"] == {"tunnel_method": "NO_TUNNEL"}
    assert defaults["drop_cascade"] is False
    assert defaults["cdc_deletion_mode"] == "hard_delete"


def test_environment_variables_that_name_no_setting() -> None:
    environ = {
        "TARGET_POSTGRES_HP_HOSTNAME": "db.example.com",
        "TARGET_POSTGRES_HP_HOST": "db.example.com",
        "TARGET_POSTGRES_HP_DIALECT_DRIVER": "x",
        "TARGET_POSTGRES_HP__DIALECT": "postgres",  # a Meltano extra, not a setting
        "TARGET_POSTGRES_HP_SSL_MODE": '{"mode": "require"}',
        "TARGET_POSTGRES_HP_QQQQ": "1",
        "OTHER_HOSTNAME": "x",
    }
    assert unknown_environment_settings(environ) == [
        "Environment variable TARGET_POSTGRES_HP_HOSTNAME names no setting of this target:"
        " rename it to TARGET_POSTGRES_HP_HOST (setting host) or unset it.",
        "Environment variable TARGET_POSTGRES_HP_QQQQ names no setting of this target: unset it"
        " (target-postgres-hp --about lists every setting).",
    ]
