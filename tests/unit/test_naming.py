"""Raw-style identifiers (SPEC §4.1, §5)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from target_postgres_hp.naming import (
    fit,
    raw_identifier,
    raw_table_name,
    short_hash,
    split_stream_name,
)


def test_raw_identifier_lowercases_and_replaces() -> None:
    assert raw_identifier("Airbyte_Internal") == "airbyte_internal"
    assert raw_identifier("my-schema.v2") == "my_schema_v2"
    assert raw_identifier("2024data") == "_2024data"
    assert raw_identifier("Ünïcode") == "_n_code"
    assert raw_identifier("") == "_"


def test_raw_table_name() -> None:
    assert raw_table_name("public", "users") == "public_raw__stream_users"
    assert raw_table_name("Sales", "Users") == "sales_raw__stream_users"
    # a name holding "__" widens the separator so the split stays unambiguous
    assert raw_table_name("a__b", "c") == "a__b_raw___stream_c"
    assert raw_table_name("a", "b___c") == "a_raw____stream_b___c"


def test_long_names_are_cut_with_a_hash() -> None:
    long = "x" * 100
    name = raw_table_name("public", long)
    assert len(name.encode()) == 63
    assert name.endswith("_" + short_hash(f"public_raw__stream_{long}"))
    assert raw_table_name("public", long + "y") != name


def test_fit_cuts_on_character_boundaries() -> None:
    name = fit("é" * 40, "original")
    assert len(name.encode("utf-8")) <= 63
    assert name.endswith("_" + short_hash("original"))
    name.encode("utf-8").decode("utf-8")


@given(st.text(min_size=0, max_size=300))
def test_raw_identifier_properties(text: str) -> None:
    name = raw_identifier(text)
    assert len(name.encode("utf-8")) <= 63
    assert all(ch in "abcdefghijklmnopqrstuvwxyz0123456789_" for ch in name)
    assert not name[0].isdigit()
    assert raw_identifier(text) == name


def test_split_stream_name() -> None:
    assert split_stream_name("users") == split_stream_name("users")
    assert split_stream_name("users").namespace is None
    assert split_stream_name("sales-users").namespace == "sales"
    assert split_stream_name("sales-users").table == "users"
    assert split_stream_name("db-sales-users").namespace == "sales"
    assert split_stream_name("db-sales-users").table == "users"
    assert split_stream_name("a-b-c-d").namespace is None
    assert split_stream_name("-users").namespace is None
