"""Final-table identifiers, suffixes, derived names and collision-free assignment (SPEC §5)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from target_postgres_hp.naming import (
    assign_names,
    derived_name,
    final_identifier,
    raw_identifier,
    raw_table_name,
    renamed_keys,
    short_hash,
    shown_name,
    storable_key,
    with_suffix,
)
from target_postgres_hp.rawdata import make_storable

LIMIT = 63
HASH_TAIL = re.compile(r"_[0-9a-f]{8}\Z")
#: Mathematical fraktur small a to g: letters of 4 bytes each.
FRAKTUR = "".join(chr(code) for code in range(0x1D51E, 0x1D525))
RESERVED = frozenset(
    {"_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta", "_airbyte_generation_id"}
)


def size(name: str) -> int:
    """The UTF-8 length of `name`."""
    return len(name.encode("utf-8"))


def conformed(name: str) -> str:
    """SPEC §5 for final names: every character but a letter (any script), a digit or `_`
    becomes `_`."""
    return "".join(
        char
        if char == "_"
        or unicodedata.category(char).startswith("L")
        or unicodedata.category(char) == "Nd"
        else "_"
        for char in name
    )


def assert_identifier(name: str) -> None:
    """Within 63 bytes, valid UTF-8, only letters, digits and `_`."""
    assert name
    assert size(name) <= LIMIT
    assert name.encode("utf-8").decode("utf-8") == name
    assert conformed(name) == name


# --- final_identifier --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("users", "users"),
        ("userName", "userName"),
        ("UserName", "UserName"),
        ("USERS", "USERS"),
        ("prénom", "prénom"),
        ("名前", "名前"),
        ("Имя_клиента", "Имя_клиента"),
        ("user-name", "user_name"),
        ("user name", "user_name"),
        ("a.b.c", "a_b_c"),
        ("price ($)", "price____"),
        ("2024data", "2024data"),
        ("_private", "_private"),
        ("😀face", "_face"),
        ("tab\there", "tab_here"),
        ("", "_"),
    ],
)
def test_final_identifier_conforms(name: str, expected: str) -> None:
    assert final_identifier(name) == expected


@pytest.mark.parametrize(
    "word", ["select", "user", "order", "table", "from", "group", "SELECT", "Order", "all", "end"]
)
def test_reserved_words_are_kept(word: str) -> None:
    assert final_identifier(word) == word


def test_sql_injection_becomes_harmless() -> None:
    name = final_identifier('users"; DROP TABLE x; --')
    assert name == "users___DROP_TABLE_x____"
    for dangerous in ('"', ";", " ", "-", "'", "\\", "\x00"):
        assert dangerous not in name
    nasty = final_identifier("x'); DELETE FROM t; /* \" \\ \x00 \n */")
    assert re.fullmatch(r"\w+", nasty)
    assert '"' not in nasty
    assert ";" not in nasty


def test_raw_names_of_an_injection_are_harmless() -> None:
    assert raw_identifier('Users"; DROP TABLE x; --') == "users___drop_table_x____"
    table = raw_table_name('s"; --', 'users"; DROP TABLE x; --')
    assert re.fullmatch(r"[a-z0-9_]+", table)


def test_long_name_is_cut_and_ends_with_a_hash() -> None:
    name = "a" * 100
    result = final_identifier(name)
    assert size(result) == LIMIT
    assert result == "a" * (LIMIT - 9) + "_" + short_hash(name)
    assert HASH_TAIL.search(result)


def test_name_of_exactly_63_bytes_is_not_cut() -> None:
    assert final_identifier("a" * 63) == "a" * 63
    assert final_identifier("é" * 31 + "a") == "é" * 31 + "a"
    assert final_identifier("a" * 64) != "a" * 63
    assert HASH_TAIL.search(final_identifier("a" * 64))


def test_long_names_sharing_63_bytes_do_not_collide() -> None:
    common = "customer_lifetime_value_by_acquisition_channel_and_region_for_q"
    assert size(common) >= LIMIT
    first = final_identifier(common + "1")
    second = final_identifier(common + "2")
    assert first != second
    assert size(first) <= LIMIT
    assert size(second) <= LIMIT


def test_names_cleaned_alike_still_differ_once_cut() -> None:
    # both clean to the same 80 underscores-and-letters; the hash is of the original
    first = final_identifier("a-" * 40)
    second = final_identifier("a." * 40)
    assert first != second
    assert first.startswith("a_a_")
    assert first.endswith("_" + short_hash("a-" * 40))
    assert second.endswith("_" + short_hash("a." * 40))


@pytest.mark.parametrize(
    "name",
    [
        "Имя" * 11,  # 66 bytes
        "Имя" * 50,  # 300 bytes
        "名前" * 11,  # 66 bytes
        "名前" * 50,  # 300 bytes
        "a" + "名" * 21,  # 64 bytes, cut in the middle of a 3-byte character
        "ab" + "名" * 30,
        "😀" * 16,  # 64 bytes of emoji (not letters): 16 bytes once cleaned
        "😀" * 64,  # 256 bytes, 64 once cleaned
        "😀" * 75,  # 300 bytes
        "x😀" * 13,  # 65 bytes
        "x😀" * 40,  # 200 bytes
        "Ωμέγα_" * 6 + "名前😀",
        "é" * 32,  # 64 bytes
        "aé" * 25,
        FRAKTUR * 3,  # 4-byte letters
    ],
)
def test_multibyte_names_are_cut_on_character_boundaries(name: str) -> None:
    assert LIMIT < size(name) <= 300
    result = final_identifier(name)
    assert_identifier(result)
    assert final_identifier(name) == result
    clean = conformed(name)
    if size(clean) <= LIMIT:
        # not cut: emoji are no letters and became one-byte underscores
        assert result == clean
        return
    assert result.endswith("_" + short_hash(name))
    prefix = result[: -len("_" + short_hash(name))]
    assert clean.startswith(prefix)
    budget = LIMIT - 9
    assert size(prefix) <= budget
    # the longest prefix that fits: one more character would not
    assert size(clean[: len(prefix) + 1]) > budget


def test_letters_of_other_scripts_are_kept_when_cut() -> None:
    result = final_identifier("Имя" * 50)
    assert result.startswith("ИмяИмя")
    result = final_identifier("名前" * 50)
    assert result.startswith("名前名前")
    assert "_" not in result[: -len("_" + short_hash("名前" * 50))]


@given(st.text(max_size=300))
def test_final_identifier_properties(name: str) -> None:
    result = final_identifier(name)
    assert_identifier(result)
    assert final_identifier(name) == result
    clean = conformed(name) or "_"
    if size(clean) <= LIMIT:
        assert result == clean
    else:
        tail = "_" + short_hash(name)
        assert result.endswith(tail)
        prefix = result[: -len(tail)]
        assert clean.startswith(prefix)
        assert size(prefix) <= LIMIT - len(tail) < size(clean[: len(prefix) + 1])


@given(
    st.text(alphabet=st.characters(categories=["L", "Nd"]) | st.just("_"), min_size=1, max_size=40)
)
def test_final_identifier_keeps_conforming_names(name: str) -> None:
    if size(name) <= LIMIT:
        assert final_identifier(name) == name


@given(
    st.text(min_size=LIMIT, max_size=120).filter(lambda text: size(text) >= LIMIT),
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)
def test_long_names_with_a_common_start_differ(common: str, end_a: str, end_b: str) -> None:
    if end_a == end_b:
        return
    first = final_identifier(common + end_a)
    second = final_identifier(common + end_b)
    assert first != second
    assert size(first) <= LIMIT
    assert size(second) <= LIMIT


# --- with_suffix -------------------------------------------------------------------------------


def test_with_suffix_appends_a_number() -> None:
    assert with_suffix("name", 2) == "name_2"
    assert with_suffix("userName", 13) == "userName_13"
    assert with_suffix("a" * 63, 2) == "a" * 61 + "_2"
    assert with_suffix("a" * 63, 100) == "a" * 59 + "_100"
    assert with_suffix("a" * 61, 2) == "a" * 61 + "_2"


def test_with_suffix_cuts_on_character_boundaries() -> None:
    result = with_suffix("名" * 21, 2)  # 63 bytes of 3-byte characters
    assert result == "名" * 20 + "_2"
    result = with_suffix("é" * 31 + "a", 12)
    assert result == "é" * 30 + "_12"
    assert size(result) <= LIMIT


@given(st.text(max_size=70).map(final_identifier), st.integers(min_value=2, max_value=10**6))
def test_with_suffix_properties(name: str, number: int) -> None:
    result = with_suffix(name, number)
    assert size(result) <= LIMIT
    result.encode("utf-8").decode("utf-8")
    assert result.endswith(f"_{number}")
    assert name.startswith(result[: -len(f"_{number}")])
    assert with_suffix(name, number + 1) != result
    if size(name) + len(f"_{number}") <= LIMIT:
        assert result == f"{name}_{number}"


# --- derived_name ------------------------------------------------------------------------------


def test_derived_name_of_a_short_base() -> None:
    assert derived_name("users", "stage") == "users_stage"
    assert derived_name("userName", "pkey") == "userName_pkey"
    assert derived_name("名前", "key") == "名前_key"


@pytest.mark.parametrize("base", ["x" * 63, "x" * 60, "名" * 21, "Имя" * 10 + "abc", "é" * 31])
def test_derived_name_of_a_long_base(base: str) -> None:
    names = {
        purpose: derived_name(base, purpose) for purpose in ("stage", "pkey", "key", "untyped")
    }
    for purpose, name in names.items():
        assert size(name) <= LIMIT
        name.encode("utf-8").decode("utf-8")
        # The base is cut and hashed; the purpose survives at the end.
        assert re.search(rf"_[0-9a-f]{{8}}_{purpose}$", name)
    assert len(set(names.values())) == len(names)
    assert derived_name(base, "stage") == names["stage"]


def test_derived_names_of_long_bases_sharing_their_start_differ() -> None:
    common = "z" * 63
    assert derived_name(common + "a", "stage") != derived_name(common + "b", "stage")
    assert derived_name("y" * 60 + "1", "pkey") != derived_name("y" * 60 + "2", "pkey")


@given(st.text(max_size=100).map(final_identifier), st.sampled_from(["stage", "pkey", "key"]))
def test_derived_name_properties(base: str, purpose: str) -> None:
    result = derived_name(base, purpose)
    assert size(result) <= LIMIT
    result.encode("utf-8").decode("utf-8")
    assert derived_name(base, purpose) == result
    if size(base) + 1 + len(purpose) <= LIMIT:
        assert result == f"{base}_{purpose}"
    else:
        assert re.search(rf"_[0-9a-f]{{8}}_{purpose}$", result)


# --- assign_names ------------------------------------------------------------------------------


def wanted_of(sources: list[str]) -> list[tuple[str, str]]:
    return [(source, final_identifier(source)) for source in sources]


def test_distinct_names_are_kept() -> None:
    assert assign_names(wanted_of(["id", "userName", "名前"]), {}, RESERVED) == {
        "id": "id",
        "userName": "userName",
        "名前": "名前",
    }


def test_first_in_schema_order_keeps_the_plain_form() -> None:
    wanted = wanted_of(["a-b", "a.b", "a b"])
    assert assign_names(wanted, {}, RESERVED) == {"a-b": "a_b", "a.b": "a_b_2", "a b": "a_b_3"}
    reordered = wanted_of(["a b", "a.b", "a-b"])
    assert assign_names(reordered, {}, RESERVED) == {
        "a b": "a_b",
        "a.b": "a_b_2",
        "a-b": "a_b_3",
    }


def test_suffix_skips_names_already_taken() -> None:
    owners: dict[str, str | None] = {"a_b": "a_b", "a_b_2": "gone"}
    result = assign_names(wanted_of(["a_b", "a-b"]), owners, RESERVED)
    assert result == {"a_b": "a_b", "a-b": "a_b_3"}


def test_recorded_owner_keeps_its_name_whatever_the_order() -> None:
    first = assign_names(wanted_of(["a-b", "a.b"]), {}, RESERVED)
    assert first == {"a-b": "a_b", "a.b": "a_b_2"}
    owners: dict[str, str | None] = {name: source for source, name in first.items()}
    second = assign_names(wanted_of(["a.b", "a-b", "a b"]), owners, RESERVED)
    assert second == {"a.b": "a_b_2", "a-b": "a_b", "a b": "a_b_3"}


def test_recorded_owner_keeps_an_old_name_even_if_it_conforms_differently() -> None:
    owners: dict[str, str | None] = {"legacy_column": "price"}
    result = assign_names([("price", "price"), ("other", "legacy_column")], owners, RESERVED)
    assert result == {"price": "legacy_column", "other": "legacy_column_2"}


def test_unowned_existing_identifier_is_adopted() -> None:
    owners: dict[str, str | None] = {"a_b": None, "old": None}
    result = assign_names(wanted_of(["new", "a.b", "a-b"]), owners, RESERVED)
    assert result == {"new": "new", "a.b": "a_b", "a-b": "a_b_2"}


def test_unowned_identifier_nobody_conforms_to_stays_taken() -> None:
    owners: dict[str, str | None] = {"x_2": None}
    result = assign_names([("x-", "x"), ("x.", "x")], owners, RESERVED)
    assert result == {"x-": "x", "x.": "x_3"}
    owned: dict[str, str | None] = {"x": "removed property"}
    assert assign_names([("x", "x")], owned, RESERVED) == {"x": "x_2"}


def test_property_named_like_an_airbyte_column_gets_a_suffix() -> None:
    wanted = wanted_of(["id", "_airbyte_raw_id", "_airbyte_meta"])
    result = assign_names(wanted, {}, RESERVED)
    assert result == {
        "id": "id",
        "_airbyte_raw_id": "_airbyte_raw_id_2",
        "_airbyte_meta": "_airbyte_meta_2",
    }


def test_airbyte_column_in_the_table_is_not_adopted() -> None:
    owners: dict[str, str | None] = dict.fromkeys(RESERVED)
    result = assign_names(wanted_of(["_airbyte_raw_id", "id"]), owners, RESERVED)
    assert result == {"_airbyte_raw_id": "_airbyte_raw_id_2", "id": "id"}


def test_suffixed_long_names_fit() -> None:
    long = "a" * 63
    result = assign_names([("p1", long), ("p2", long), ("p3", long)], {}, RESERVED)
    assert result["p1"] == long
    assert result["p2"] == "a" * 61 + "_2"
    assert result["p3"] == "a" * 61 + "_3"
    multibyte = "名" * 21
    result = assign_names([("p1", multibyte), ("p2", multibyte)], {}, RESERVED)
    assert result["p2"] == "名" * 20 + "_2"
    assert all(size(name) <= LIMIT for name in result.values())


NAME_PARTS = st.one_of(
    st.text(alphabet="aB-._é名 ", max_size=4),
    st.text(alphabet="ab-", min_size=58, max_size=70),
    st.text(alphabet="名-", min_size=19, max_size=25),
    st.sampled_from(["_airbyte_raw_id", "_airbyte_meta", "x_2", "x", "x-", "x.", "a_b_2"]),
)
SOURCES = st.lists(NAME_PARTS, unique=True, max_size=14)


def assert_valid_assignment(
    wanted: list[tuple[str, str]], result: dict[str, str], reserved: frozenset[str]
) -> None:
    assert set(result) == {source for source, _ in wanted}
    names = list(result.values())
    assert len(set(names)) == len(names), result
    assert not set(names) & reserved
    for name in names:
        assert size(name) <= LIMIT
        name.encode("utf-8").decode("utf-8")


@given(SOURCES)
def test_assignment_is_collision_free(sources: list[str]) -> None:
    wanted = wanted_of(sources)
    result = assign_names(wanted, {}, RESERVED)
    assert_valid_assignment(wanted, result, RESERVED)
    assert assign_names(wanted, {}, RESERVED) == result


@given(SOURCES, st.lists(NAME_PARTS.map(final_identifier), max_size=5))
def test_assignment_avoids_existing_identifiers(sources: list[str], existing: list[str]) -> None:
    wanted = wanted_of(sources)
    owners: dict[str, str | None] = {name: f"removed:{name}" for name in existing}
    result = assign_names(wanted, owners, RESERVED)
    assert_valid_assignment(wanted, result, RESERVED)
    assert not set(result.values()) & set(existing)


@given(st.data(), SOURCES, SOURCES)
def test_assignment_is_stable_across_runs(
    data: st.DataObject, sources: list[str], later: list[str]
) -> None:
    wanted = wanted_of(sources)
    first = assign_names(wanted, {}, RESERVED)
    owners: dict[str, str | None] = {name: source for source, name in first.items()}
    # the same properties in another order, with new ones mixed in
    new = [source for source in later if source not in first]
    second_wanted = data.draw(st.permutations(wanted + wanted_of(new)))
    second = assign_names(second_wanted, owners, RESERVED)
    assert_valid_assignment(second_wanted, second, RESERVED)
    for source, name in first.items():
        assert second[source] == name


@given(st.data(), SOURCES)
def test_unowned_columns_are_adopted_by_the_first_conforming_source(
    data: st.DataObject, sources: list[str]
) -> None:
    wanted = wanted_of(sources)
    first = assign_names(wanted, {}, RESERVED)
    # the table exists but nothing recorded which property made which column
    owners: dict[str, str | None] = dict.fromkeys(first.values())
    second_wanted = data.draw(st.permutations(wanted))
    second = assign_names(second_wanted, owners, RESERVED)
    assert_valid_assignment(second_wanted, second, RESERVED)
    seen: set[str] = set()
    for source, plain in second_wanted:
        if plain in owners and plain not in seen:
            assert second[source] == plain
        seen.add(plain)


@given(st.lists(st.text(alphabet="aB-._é名 ", max_size=5), unique=True, max_size=14))
def test_first_of_each_clashing_group_keeps_the_plain_form(sources: list[str]) -> None:
    """Without digits in the names, no suffixed name can equal another's plain form, so the first
    source of every group of clashing names gets the plain form, the others a suffix."""
    wanted = wanted_of(sources)
    result = assign_names(wanted, {}, RESERVED)
    assert_valid_assignment(wanted, result, RESERVED)
    first_of: dict[str, str] = {}
    for source, plain in wanted:
        first_of.setdefault(plain, source)
    for source, plain in wanted:
        if first_of[plain] == source:
            assert result[source] == plain
        else:
            assert result[source] != plain
            assert re.fullmatch(re.escape(plain) + r"_\d+", result[source])


def test_derived_name_keeps_its_purpose_for_a_long_base() -> None:
    name = derived_name("x" * 63, "pkey")
    assert name.endswith("_pkey")
    assert len(name.encode("utf-8")) <= 63
    assert name != derived_name("x" * 62 + "y", "pkey")


def test_suffixed_name_never_takes_another_sources_plain_name() -> None:
    names = assign_names([("b", "x"), ("c", "x"), ("a", "x_2")], {}, frozenset())
    assert names["a"] == "x_2"
    assert names["b"] == "x"
    assert names["c"] not in {"x", "x_2"}
    assert len(set(names.values())) == 3


# ---------------------------------------------------------------- names JSONB cannot hold


def test_a_property_name_holding_nul_is_kept_under_its_cleaned_name() -> None:
    assert renamed_keys(["id", "a\x00b", "k\x00", "\x00"]) == {
        "a\x00b": "ab",
        "k\x00": "k",
        "\x00": "",
    }
    # A property whose name is clean is never renamed; the one whose cleaned name it is, is.
    assert renamed_keys(["a\x00b", "ab"]) == {"a\x00b": "ab_2"}
    assert renamed_keys(["a\x00b", "ab", "ab_2"]) == {"a\x00b": "ab_3"}
    # Two names cleaning alike: code point order decides, whatever the schema's order.
    assert renamed_keys(["a\x00\x00b", "a\x00b"]) == {"a\x00\x00b": "ab", "a\x00b": "ab_2"}
    assert renamed_keys(["a\x00b", "a\x00\x00b"]) == {"a\x00\x00b": "ab", "a\x00b": "ab_2"}
    # A lone surrogate, which UTF-8 cannot hold, is replaced as cleaning replaces it.
    assert renamed_keys(["x\ud800"]) == {"x\ud800": "x\ufffd"}
    assert storable_key("a\x00b\udc00") == "ab\ufffd"


def test_names_shown_in_the_log_read_apart() -> None:
    assert [shown_name(name) for name in ("users", "_", "-", "", " ", " a", "a\x00")] == [
        "users",
        "_",
        "-",
        "''",
        "' '",
        "' a'",
        "'a\\x00'",
    ]


@given(st.lists(st.text(alphabet="ab_2\x00", max_size=4), unique=True, max_size=8))
def test_renamed_keys_are_unique_and_clean(properties: list[str]) -> None:
    renamed = renamed_keys(properties)
    keys = [renamed.get(prop, prop) for prop in properties]
    assert len(set(keys)) == len(keys), renamed
    for prop, key in renamed.items():
        assert "\x00" in prop
        assert "\x00" not in key
        assert storable_key(prop) == make_storable(prop)[0]  # as records' keys are cleaned
        assert re.fullmatch(re.escape(storable_key(prop)) + r"(_\d+)?", key), (prop, key)
    assert renamed_keys(list(reversed(properties))) == renamed
