"""The SQL of deduplicated loads (`target_postgres_hp.sql`, SPEC §6.3), rendered to text without
a server: key terms, the batch's winners, the upsert and recorded deletes. The winner rule's own
text is `test_winner.py`'s; here it must sit in the right place, between the right rows."""

from __future__ import annotations

from psycopg.sql import SQL, Composable, Identifier

from target_postgres_hp import sql, winner

#: The winner rule's ORDER BY after the keys, with a cursor `cur`.
RANKED = (
    '"_airbyte_generation_id" DESC NULLS LAST, "cur" DESC NULLS LAST,'
    ' "_airbyte_extracted_at" DESC NULLS LAST, "_airbyte_raw_id" DESC'
)
#: What `is_delete` makes of the marker column `_sdc_deleted_at`.
MARKED = (
    "\"_sdc_deleted_at\" IS NOT NULL OR _airbyte_meta->'changes'"
    ' @> \'[{"field": "_sdc_deleted_at"}]\'::jsonb'
)


def text(composed: Composable, **parts: str) -> str:
    """The statement's text, with each of `parts` (a piece of its text) shown as `<name>`."""
    rendered = composed.as_string(None)
    for name, part in parts.items():
        rendered = rendered.replace(part, f"<{name}>")
    return rendered


def beats(new: Composable, old: Composable, cursor: str | None) -> str:
    return text(winner.beats(new, old, cursor))


def test_key_terms_without_types_are_the_columns() -> None:
    assert text(sql.key_terms(["id", "Region Code"])) == '"id", "Region Code"'


def test_key_terms_with_types_stand_in_for_null() -> None:
    terms = sql.key_terms(
        ["n", "s", "j", "ts"], ["bigint", "text", "json", "timestamp(3) with time zone"]
    )
    # A type without a stand-in (json) keeps the plain column.
    assert text(terms) == (
        '(COALESCE("n", 0)), (("n" IS NULL)), (COALESCE("s", \'\')), (("s" IS NULL)), "j",'
        ' (COALESCE("ts", \'-infinity\'::timestamptz)), (("ts" IS NULL))'
    )


def test_create_unique_index() -> None:
    terms = sql.key_terms(["id"])
    assert text(sql.create_unique_index("s", "t", "t_key", terms, nulls_equal=True)) == (
        'CREATE UNIQUE INDEX "t_key" ON "s"."t" ("id") NULLS NOT DISTINCT'
    )
    assert text(sql.create_unique_index("s", "t", "t_key", terms, nulls_equal=False)) == (
        'CREATE UNIQUE INDEX "t_key" ON "s"."t" ("id")'
    )


def test_distinct_winners() -> None:
    assert text(sql.distinct_winners("stage", ["a", "B"], "cur"), rank=RANKED) == (
        '(SELECT DISTINCT ON ("a", "B") * FROM pg_temp."stage" ORDER BY "a", "B", <rank>) AS batch'
    )


def test_session_tables_of_an_upsert_are_emptied_at_commit_not_dropped() -> None:
    assert text(sql.create_staging_table("stage", "s", "t")) == (
        'CREATE TEMPORARY TABLE "stage" (LIKE "s"."t") ON COMMIT DELETE ROWS'
    )
    assert text(sql.create_winners_table("won", "stage")) == (
        'CREATE TEMPORARY TABLE "won" (LIKE pg_temp."stage") ON COMMIT DELETE ROWS'
    )


def test_fill_winners_table() -> None:
    assert text(sql.fill_winners_table("won", "stage", ["a"], "cur"), rank=RANKED) == (
        'INSERT INTO pg_temp."won"'
        ' SELECT DISTINCT ON ("a") * FROM pg_temp."stage" ORDER BY "a", <rank>'
    )


def test_delete_key_losers_ranks_within_each_key() -> None:
    assert text(sql.delete_key_losers("s", "t", ["a", "B"], "cur"), rank=RANKED) == (
        'DELETE FROM "s"."t" WHERE ctid IN (SELECT ctid FROM (SELECT ctid,'
        ' row_number() OVER (PARTITION BY "a", "B" ORDER BY <rank>) AS place'
        ' FROM "s"."t") AS ranked WHERE place > 1)'
    )


def test_upsert_replaces_only_with_a_winner() -> None:
    statement = sql.upsert_rows(
        sql.temp_table("won"), "s", "Orders", ["id", "v"], sql.key_terms(["id"]), None
    )
    # The incoming row (EXCLUDED) must beat the table's row, not the other way round.
    wins = beats(SQL("EXCLUDED"), Identifier("Orders"), None)
    assert text(statement, wins=wins) == (
        'INSERT INTO "s"."Orders" AS "Orders" ("id", "v") SELECT "id", "v" FROM pg_temp."won"'
        ' ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id", "v" = EXCLUDED."v"'
        " WHERE <wins>"
    )


def test_upsert_with_deletes_and_vacated_columns() -> None:
    statement = sql.upsert_rows(
        sql.winners_where("won", [("_sdc_deleted_at", "_sdc_deleted_at")]),
        "s",
        "t",
        ["id"],
        sql.key_terms(["id"], ["bigint"]),
        "cur",
        deleted=[("_sdc_deleted_at", "_sdc_deleted_at")],
        vacated=["Gone", "old"],
    )
    wins = beats(SQL("EXCLUDED"), Identifier("t"), "cur")
    assert text(statement, wins=wins, marked=MARKED) == (
        'WITH written AS (INSERT INTO "s"."t" AS "t" ("id") SELECT "id"'
        ' FROM pg_temp."won" WHERE <marked>'
        ' ON CONFLICT ((COALESCE("id", 0)), (("id" IS NULL)))'
        ' DO UPDATE SET "id" = EXCLUDED."id", "Gone" = NULL, "old" = NULL'
        " WHERE <wins> RETURNING ctid, <marked> AS deleted)"
        " SELECT ctid::text FROM written WHERE deleted"
    )


def test_is_delete_checks_every_marker() -> None:
    assert text(sql.is_delete([("_sdc_deleted_at", "_sdc_deleted_at"), ("It's", "p'q")])) == (
        MARKED + ' OR "It\'s" IS NOT NULL'
        " OR _airbyte_meta->'changes' @> '[{\"field\": \"p''q\"}]'::jsonb"
    )


def test_tombstones_discard_the_winners_they_beat() -> None:
    first, second = sql.discard_beaten_by_tombstones("won", "s", "t_deleted", ["a", "B"], "cur")
    # A batch row stays only if it beats the recorded delete.
    wins = beats(Identifier("batch"), Identifier("dead"), "cur")
    assert text(first, wins=wins) == (
        'DELETE FROM pg_temp."won" AS batch USING "s"."t_deleted" AS dead'
        ' WHERE dead."a" = batch."a" AND dead."B" = batch."B" AND NOT <wins>'
    )
    # Keys with a NULL part match a delete of the same key through IS NOT DISTINCT FROM.
    assert text(second, wins=wins) == (
        'DELETE FROM pg_temp."won" AS batch USING "s"."t_deleted" AS dead'
        ' WHERE (batch."a" IS NULL OR batch."B" IS NULL)'
        ' AND dead."a" IS NOT DISTINCT FROM batch."a" AND dead."B" IS NOT DISTINCT FROM batch."B"'
        " AND NOT <wins>"
    )


def test_delete_by_ctid() -> None:
    assert text(sql.delete_by_ctid("s", "t")) == (
        'DELETE FROM "s"."t" WHERE ctid = ANY(%s::text[]::tid[])'
    )
