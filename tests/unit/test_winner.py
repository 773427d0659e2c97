"""The winner rule (SPEC §6.3) as `winner.py` writes it, checked on the SQL text without a server:
the criteria and their order, the exact ORDER BY and predicate forms, and that the two forms list
the same criteria in the same order for any cursor name. Whether PostgreSQL evaluates the two
forms as the rule says is `tests/integration/test_winner_rule.py`."""

from __future__ import annotations

import re
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from target_postgres_hp import winner
from target_postgres_hp.winner import ARRIVAL, EXTRACTED_AT, GENERATION, Criterion

#: Any column name PostgreSQL takes (no NUL), quotes and dots included.
NAMES = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=12
)
CURSORS = st.one_of(st.none(), NAMES.filter(lambda name: name not in {GENERATION, EXTRACTED_AT}))
#: SQL text as tokens: quoted identifiers (a doubled quote stands for one inside) and the rest.
TOKEN = re.compile(r'"(?:[^"]|"")*"|[^"]+')


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def text(composed: sql.Composable) -> str:
    return composed.as_string(None)


def tokens(sql_text: str) -> list[str]:
    """Read left to right, so a quote inside an identifier never starts a token."""
    found = TOKEN.findall(sql_text)
    assert "".join(found) == sql_text
    return found


def test_criteria_most_significant_first() -> None:
    assert winner.criteria("cur") == [
        Criterion(GENERATION, between_nonzero_only=True),
        Criterion("cur"),
        Criterion(EXTRACTED_AT),
    ]
    assert winner.criteria(None) == [
        Criterion(GENERATION, between_nonzero_only=True),
        Criterion(EXTRACTED_AT),
    ]


def test_order_by_text() -> None:
    assert text(winner.order_by(["id", 'Odd "Key"'], "updated_at")) == (
        '"id", "Odd ""Key""", "_airbyte_generation_id" DESC NULLS LAST,'
        ' "updated_at" DESC NULLS LAST, "_airbyte_extracted_at" DESC NULLS LAST,'
        ' "_airbyte_raw_id" DESC'
    )
    assert text(winner.order_by([], None)) == (
        '"_airbyte_generation_id" DESC NULLS LAST, "_airbyte_extracted_at" DESC NULLS LAST,'
        ' "_airbyte_raw_id" DESC'
    )


# Each criterion is `(new greater OR (tie AND <the next criteria>))`, ending in TRUE (arrival).
GENERATION_GREATER = (
    '(coalesce("n"."_airbyte_generation_id", 0) <> 0'
    ' AND coalesce("o"."_airbyte_generation_id", 0) <> 0'
    ' AND "n"."_airbyte_generation_id" > "o"."_airbyte_generation_id")'
)
GENERATION_TIE = (
    '(coalesce("n"."_airbyte_generation_id", 0) = coalesce("o"."_airbyte_generation_id", 0)'
    ' OR coalesce("n"."_airbyte_generation_id", 0) = 0'
    ' OR coalesce("o"."_airbyte_generation_id", 0) = 0)'
)
CURSOR_GREATER = '("n"."cur" IS NOT NULL AND ("o"."cur" IS NULL OR "n"."cur" > "o"."cur"))'
CURSOR_TIE = '("n"."cur" IS NOT DISTINCT FROM "o"."cur")'
EXTRACTED_GREATER = (
    '("n"."_airbyte_extracted_at" IS NOT NULL AND ("o"."_airbyte_extracted_at" IS NULL'
    ' OR "n"."_airbyte_extracted_at" > "o"."_airbyte_extracted_at"))'
)
EXTRACTED_TIE = '("n"."_airbyte_extracted_at" IS NOT DISTINCT FROM "o"."_airbyte_extracted_at")'


def test_beats_text_with_cursor() -> None:
    assert text(winner.beats(sql.Identifier("n"), sql.Identifier("o"), "cur")) == (
        f"({GENERATION_GREATER} OR ({GENERATION_TIE} AND"
        f" ({CURSOR_GREATER} OR ({CURSOR_TIE} AND"
        f" ({EXTRACTED_GREATER} OR ({EXTRACTED_TIE} AND TRUE))))))"
    )


def test_beats_text_without_cursor() -> None:
    assert text(winner.beats(sql.Identifier("n"), sql.Identifier("o"), None)) == (
        f"({GENERATION_GREATER} OR ({GENERATION_TIE} AND"
        f" ({EXTRACTED_GREATER} OR ({EXTRACTED_TIE} AND TRUE))))"
    )


def expected_criteria(cursor: str | None) -> list[str]:
    """SPEC §6.3's order, before arrival."""
    return [GENERATION, EXTRACTED_AT] if cursor is None else [GENERATION, cursor, EXTRACTED_AT]


@given(keys=st.lists(NAMES, max_size=3), cursor=CURSORS)
def test_order_by_lists_keys_then_criteria_then_arrival(
    keys: list[str], cursor: str | None
) -> None:
    items = [quote(key) for key in keys]
    items += [f"{quote(column)} DESC NULLS LAST" for column in expected_criteria(cursor)]
    items.append(f"{quote(ARRIVAL)} DESC")
    assert text(winner.order_by(keys, cursor)) == ", ".join(items)


@given(keys=st.lists(NAMES, max_size=3), cursor=CURSORS, new=NAMES, old=NAMES)
def test_both_forms_list_the_same_criteria_in_order(
    keys: list[str], cursor: str | None, new: str, old: str
) -> None:
    """The columns `beats` compares, in the order it first reaches them, are the columns
    `order_by` ranks by after the keys (arrival aside), and both follow SPEC §6.3."""
    ordered = tokens(text(winner.order_by(keys, cursor)))
    ranked = [name for name, after in pairwise(ordered) if after.startswith(" DESC NULLS LAST")]
    predicate = tokens(text(winner.beats(sql.Identifier(new), sql.Identifier(old), cursor)))
    compared: list[str] = []
    for alias, dot, column in zip(predicate, predicate[1:], predicate[2:], strict=False):
        if alias.startswith('"') and dot == ".":
            assert alias in {quote(new), quote(old)}
            if column not in compared:
                compared.append(column)
    assert ranked == compared == [quote(column) for column in expected_criteria(cursor)]
    # Arrival is the last word of both: the later row (`new`) wins what nothing else decides.
    assert ordered[-2:] == [quote(ARRIVAL), " DESC"]
    assert predicate[-1].endswith(" AND TRUE" + ")" * (2 * len(ranked)))
