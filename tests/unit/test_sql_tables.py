"""The SQL of tables, schemas, views and sessions (`target_postgres_hp.sql`), rendered to text
without a server: names always go through identifier quoting, tables are schema-qualified, and
values are literals."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from psycopg.sql import SQL, Composable

from target_postgres_hp import sql

#: Any name PostgreSQL takes (no NUL), quotes, dots and spaces included.
NAMES = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=12
)


def text(composed: Composable) -> str:
    return composed.as_string(None)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_odd_names_are_quoted_identifiers() -> None:
    assert text(sql.copy_into('My "Schema"', "a.b", ["Col", "x; DROP TABLE t", 'q"'])) == (
        'COPY "My ""Schema"""."a.b" ("Col", "x; DROP TABLE t", "q""") FROM STDIN'
    )


@given(schema=NAMES, table=NAMES, columns=st.lists(NAMES, min_size=1, max_size=3))
def test_copy_into_quotes_any_name(schema: str, table: str, columns: list[str]) -> None:
    listed = ", ".join(quote(column) for column in columns)
    assert text(sql.copy_into(schema, table, columns)) == (
        f"COPY {quote(schema)}.{quote(table)} ({listed}) FROM STDIN"
    )


def test_create_final_table() -> None:
    statement = sql.create_final_table(
        "Sales", "Orders", [("id", "BIGINT"), ("Unit Price", "NUMERIC"), ('say "hi"', "TEXT")]
    )
    assert text(statement) == (
        'CREATE TABLE "Sales"."Orders" ("id" BIGINT, "Unit Price" NUMERIC, "say ""hi""" TEXT,'
        " _airbyte_raw_id VARCHAR NOT NULL,"
        " _airbyte_extracted_at TIMESTAMP WITH TIME ZONE NOT NULL,"
        " _airbyte_meta JSONB NOT NULL, _airbyte_generation_id BIGINT)"
    )


def test_create_raw_table_and_its_untyped_index() -> None:
    table, index = text(sql.create_raw_table("raw", "s_raw__stream_t", "pk", "untyped")).split("; ")
    name, columns = table.split(" (", 1)
    assert name == 'CREATE TABLE IF NOT EXISTS "raw"."s_raw__stream_t"'
    assert columns.split(",") == [
        ' _airbyte_raw_id VARCHAR CONSTRAINT "pk" PRIMARY KEY',
        " _airbyte_extracted_at TIMESTAMP WITH TIME ZONE NOT NULL",
        " _airbyte_loaded_at TIMESTAMP WITH TIME ZONE",
        " _airbyte_data JSONB NOT NULL",
        " _airbyte_meta JSONB NOT NULL",
        " _airbyte_generation_id BIGINT NOT NULL DEFAULT 0)",
    ]
    assert index == (
        'CREATE INDEX IF NOT EXISTS "untyped" ON "raw"."s_raw__stream_t" (_airbyte_extracted_at)'
        " WHERE _airbyte_loaded_at IS NULL"
    )


def test_column_changes() -> None:
    assert text(sql.add_column("s", "t", "New Col", "TIMESTAMP WITH TIME ZONE")) == (
        'ALTER TABLE "s"."t" ADD COLUMN "New Col" TIMESTAMP WITH TIME ZONE'
    )
    # `{}` in USING is the column, quoted.
    widen = SQL("to_jsonb({}) #>> '{{}}'")
    assert text(sql.alter_column_type("s", "t", "Amount", "TEXT", widen)) == (
        'ALTER TABLE "s"."t" ALTER COLUMN "Amount" TYPE TEXT USING to_jsonb("Amount") #>> \'{}\''
    )
    # Without a conversion, the values are cast to the new type.
    assert text(sql.alter_column_type("s", "t", "Amount", "TEXT")) == (
        'ALTER TABLE "s"."t" ALTER COLUMN "Amount" TYPE TEXT USING "Amount"::TEXT'
    )


def test_copies_between_tables() -> None:
    assert text(sql.insert_from("s", "t", "s", "t_tmp", ["a", "B"])) == (
        'INSERT INTO "s"."t" ("a", "B") SELECT "a", "B" FROM "s"."t_tmp"'
    )
    assert text(sql.move_rows_of("old", "t", "new", "t", "raw", "r")) == (
        'WITH moved AS (DELETE FROM "old"."t" WHERE _airbyte_raw_id IN'
        ' (SELECT _airbyte_raw_id FROM "raw"."r") RETURNING *)'
        ' INSERT INTO "new"."t" SELECT * FROM moved'
    )
    assert text(sql.create_table_like("s", "t2", "s", "t", if_missing=True)) == (
        'CREATE TABLE IF NOT EXISTS "s"."t2" (LIKE "s"."t")'
    )


def test_comments_and_settings_are_literals() -> None:
    assert text(sql.comment_on_table("s", "t", "it's a stream")) == (
        "COMMENT ON TABLE \"s\".\"t\" IS 'it''s a stream'"
    )
    assert text(sql.comment_on_column("s", "t", "c", "prop")) == (
        'COMMENT ON COLUMN "s"."t"."c" IS \'prop\''
    )
    assert text(sql.comment_on_index("s", "ix", "key")) == 'COMMENT ON INDEX "s"."ix" IS \'key\''
    assert text(sql.comment_on_view("s", "v", "")) == 'COMMENT ON VIEW "s"."v" IS \'\''
    assert text(sql.session_setup(["Sales", "public"])) == (
        'SET TIME ZONE \'UTC\'; SET DateStyle TO ISO, MDY; SET search_path TO "Sales", "public"'
    )
    assert text(sql.set_lock_timeout(1500)) == "SET lock_timeout = 1500"


def test_view_statements() -> None:
    assert text(sql.create_view("s", "v", " SELECT 1;\n", [("security_barrier", "true")])) == (
        'CREATE VIEW "s"."v" WITH ("security_barrier" = \'true\') AS  SELECT 1'
    )
    assert text(sql.create_view("s", "v", "SELECT 1", [])) == 'CREATE VIEW "s"."v" AS SELECT 1'
    assert text(sql.drop_views([("s", "v"), ("t", "w")])) == 'DROP VIEW "s"."v", "t"."w"'
    assert text(sql.grant_on("s", "v", "SELECT", None, grantable=False)) == (
        'GRANT SELECT ON "s"."v" TO PUBLIC'
    )
    assert text(sql.grant_on("s", "v", "SELECT", "Bob", grantable=True)) == (
        'GRANT SELECT ON "s"."v" TO "Bob" WITH GRANT OPTION'
    )
