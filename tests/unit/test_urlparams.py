"""jdbc_url_params → libpq parameters (SPEC §3.3)."""

from __future__ import annotations

import logging

import pytest

from target_postgres_hp import urlparams
from target_postgres_hp.config import Settings
from target_postgres_hp.errors import ConfigError, TargetError, UrlParamsError


def test_default_connect_timeout_is_60() -> None:
    assert urlparams.parse(None).libpq == {"connect_timeout": "60"}
    assert urlparams.parse("").libpq == {"connect_timeout": "60"}


def test_known_parameters_map_to_libpq() -> None:
    params = urlparams.parse(
        "connectTimeout=15&ApplicationName=nightly%20load&options=-c%20work_mem%3D64MB"
        "&tcpKeepAlive=false&targetServerType=primary&sslrootcert=/ca.pem&sslcert=/c.pem"
        "&sslkey=/k.pem&sslpassword=p%26w&gssEncMode=disable"
    )
    assert params.libpq == {
        "connect_timeout": "15",
        "application_name": "nightly load",
        "options": "-c work_mem=64MB",
        "keepalives": "0",
        "target_session_attrs": "primary",
        "sslrootcert": "/ca.pem",
        "sslcert": "/c.pem",
        "sslkey": "/k.pem",
        "sslpassword": "p&w",
        "gssencmode": "disable",
    }


def test_connect_timeout_zero_waits_indefinitely() -> None:
    assert urlparams.parse("connectTimeout=0").libpq["connect_timeout"] == "0"


def test_equals_sign_allowed_in_values() -> None:
    assert urlparams.parse("options=-c search_path=a").libpq["options"] == "-c search_path=a"


@pytest.mark.parametrize(
    ("jdbc", "libpq"),
    [
        ("master", "primary"),
        ("secondary", "standby"),
        ("preferSecondary", "prefer-standby"),
        ("any", "any"),
    ],
)
def test_target_server_type(jdbc: str, libpq: str) -> None:
    assert urlparams.parse(f"targetServerType={jdbc}").libpq["target_session_attrs"] == libpq


def test_jdbc_only_knobs_are_ignored() -> None:
    params = urlparams.parse("prepareThreshold=0&reWriteBatchedInserts=true&defaultRowFetchSize=9")
    assert params.libpq == {"connect_timeout": "60"}
    assert params.ignored == ("prepareThreshold", "reWriteBatchedInserts", "defaultRowFetchSize")


def test_reserved_keys_are_overwritten() -> None:
    params = urlparams.parse("currentSchema=x&user=u&password=p&ssl=true&sslmode=disable")
    assert params.libpq == {"connect_timeout": "60"}
    assert params.overwritten == ("currentSchema", "user", "password", "ssl", "sslmode")


def test_reserved_keys_warn_without_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    Settings.from_config(
        {
            "host": "localhost",
            "username": "u",
            "jdbc_url_params": "password=hunter2&sslmode=disable&prepareThreshold=5",
        }
    )
    assert "jdbc_url_params sets password, which the password setting overwrites" in caplog.text
    assert "jdbc_url_params sets sslmode, which the ssl_mode setting overwrites" in caplog.text
    assert "ignored: prepareThreshold" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fooBar=1", "Setting `jdbc_url_params` has the unknown key 'fooBar': remove it"),
        (
            "connect_timeout=5",
            "Setting `jdbc_url_params` has the unknown key 'connect_timeout': "
            "write it as connectTimeout.",
        ),
        (
            "connectTimeout",
            "Setting `jdbc_url_params` has the malformed pair 'connectTimeout': "
            "write each pair as key=value.",
        ),
        ("=5", "Setting `jdbc_url_params` has the malformed pair '=5'"),
        (
            "connectTimeout=-1",
            "Setting `jdbc_url_params` has connectTimeout='-1': give a whole "
            "number of seconds (0 waits as long as possible).",
        ),
        (
            "tcpKeepAlive=maybe",
            "Setting `jdbc_url_params` has tcpKeepAlive='maybe': use true or false.",
        ),
        ("targetServerType=leader", "Setting `jdbc_url_params` has targetServerType='leader'"),
    ],
)
def test_bad_parameters_are_errors(text: str, message: str) -> None:
    with pytest.raises(UrlParamsError) as caught:
        urlparams.parse(text)
    assert str(caught.value).startswith(message)
    # A refusal the CLI prints as one sentence, like every other (errors.py).
    assert isinstance(caught.value, TargetError)


def test_malformed_pair_with_password_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_config(
            {"host": "localhost", "username": "u", "jdbc_url_params": "passwordhunter2"}
        )
    assert "hunter2" not in str(caught.value)
