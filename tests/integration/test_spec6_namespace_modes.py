"""SPEC §6.4 namespace settings end to end: `namespace_definition` (source, destination,
custom), `namespace_format`, `stream_prefix`, the `default_target_schema` alias, and how they
combine with `ignore_stream_namespace`, raw tables (§4.1), collisions and the name registry
(§5), load methods, schema changes and setting changes between runs, and the per-schema
privilege check (§3.4). Every final table is checked row by row, column by column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import run_target, schema_message, tables_in
from .test_spec6_overwrite_namespaces import (
    RAW_SCHEMA,
    USER_PROPERTIES,
    assert_final,
    assert_raw,
    emitted_states,
    lines,
    load,
    schema_exists,
    state,
    user,
    users_schema,
)

pytestmark = pytest.mark.integration

FIRST = "analytics"


def table_comment(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT obj_description(%s::regclass, 'pg_class')",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    assert row is not None
    assert row[0] is not None, f"{schema}.{table} has no comment"
    parsed: dict[str, Any] = json.loads(row[0])
    return parsed


def raw_owner(conn: psycopg.Connection[Any], raw_table: str) -> tuple[str, str, str]:
    """The (final schema, name its final table is made from, stream) a raw table records as
    its owner."""
    recorded = table_comment(conn, RAW_SCHEMA, raw_table)
    return recorded["final_schema"], recorded["final_name"], recorded["stream"]


def count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------------------- destination


def test_destination_puts_every_stream_in_the_first_schema_without_merging(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """`sales-users` and `hr-users` both want `analytics.users`: the later one gets `users_2`
    (final and raw), a warning names both streams, dedup never matches across the two, and the
    next run keeps the mapping even when the streams arrive in the other order."""
    config = pg_db.config(schema=f"{FIRST},other", namespace_definition="destination")
    sales = [user(1, "s", 1, stream="sales-users"), user(2, "s", 2, stream="sales-users")]
    hr = [user(1, "h", 3, stream="hr-users")]
    run = load(
        config,
        tmp_path / "1",
        users_schema("sales-users", keys=["id"]),
        users_schema("hr-users", keys=["id"]),
        sales[0],
        hr[0],
        sales[1],
        state(1),
    )
    assert (
        f"Streams sales-users and hr-users would share table {FIRST}.users: stream hr-users is"
        f" stored in {FIRST}.users_2 instead"
    ) in run.stderr
    conn = pg_db.admin()
    assert tables_in(conn, FIRST) == ["users", "users_2"]
    assert not schema_exists(conn, "sales")
    assert not schema_exists(conn, "hr")
    assert tables_in(conn, "other") == []
    raw_sales, raw_hr = "analytics_raw__stream_users", "analytics_raw__stream_users_2"
    assert sorted(tables_in(conn, RAW_SCHEMA)) == [raw_sales, raw_hr]
    assert raw_owner(conn, raw_sales) == (FIRST, "users", "sales-users")
    assert raw_owner(conn, raw_hr) == (FIRST, "users", "hr-users")
    assert table_comment(conn, FIRST, "users") == {"stream": "sales-users"}
    assert table_comment(conn, FIRST, "users_2") == {"stream": "hr-users"}
    assert_final(conn, sales, schema=FIRST, table="users", raw_table=raw_sales)
    assert_final(conn, hr, schema=FIRST, table="users_2", raw_table=raw_hr)
    assert emitted_states(run.stdout) == [{"n": 1}]

    # Next run: hr-users first, an update of id 1 in each stream.
    hr_2 = [user(1, "hh", 4, stream="hr-users")]
    sales_2 = [user(1, "ss", 5, stream="sales-users")]
    load(
        config,
        tmp_path / "2",
        users_schema("hr-users", keys=["id"]),
        users_schema("sales-users", keys=["id"]),
        hr_2[0],
        sales_2[0],
    )
    assert tables_in(conn, FIRST) == ["users", "users_2"]
    assert sorted(tables_in(conn, RAW_SCHEMA)) == [raw_sales, raw_hr]
    assert_final(conn, [sales_2[0], sales[1]], schema=FIRST, table="users", raw_table=raw_sales)
    assert_final(conn, hr_2, schema=FIRST, table="users_2", raw_table=raw_hr)
    assert_raw(conn, raw_sales, [*sales, *sales_2])
    assert_raw(conn, raw_hr, [*hr, *hr_2])


def test_default_target_schema_means_destination(pg_db: PgDatabase, tmp_path: Path) -> None:
    """MeltanoLabs' `default_target_schema` puts tap-postgres-style streams (`public-users`)
    in that schema, named after the table part, as MeltanoLabs target-postgres does; with
    `namespace_definition` set, the alias is only the schema."""
    config = pg_db.config(default_target_schema=FIRST)
    users = [user(1, "a", 1, stream="public-users"), user(2, "a", 2, stream="public-users")]
    run = load(config, tmp_path / "alias", users_schema("public-users", keys=["id"]), *users)
    assert "namespace_definition destination" in run.stderr
    conn = pg_db.admin()
    assert tables_in(conn, FIRST) == ["users"]
    assert tables_in(conn, "public") == []
    raw = "analytics_raw__stream_users"
    assert tables_in(conn, RAW_SCHEMA) == [raw]
    assert_final(conn, users, schema=FIRST, table="users", raw_table=raw)

    explicit = pg_db.config(default_target_schema=FIRST, namespace_definition="source")
    sales = [user(5, "b", 3, stream="sales-users")]
    load(explicit, tmp_path / "explicit", users_schema("sales-users"), *sales)
    assert tables_in(conn, "sales") == ["users"]
    assert tables_in(conn, FIRST) == ["users"]
    assert_final(conn, sales, schema="sales", table="users", raw_table="sales_raw__stream_users")


# --------------------------------------------------------------------------- custom


def test_custom_format_with_the_source_namespace(pg_db: PgDatabase, tmp_path: Path) -> None:
    """`custom` with `raw_${SOURCE_NAMESPACE}`: each namespace gets its own schema, a stream
    without a namespace goes to the first `schema`; raw names follow the final tables."""
    config = pg_db.config(
        schema=FIRST, namespace_definition="custom", namespace_format="src_${SOURCE_NAMESPACE}"
    )
    sent = {
        "sales-users": [user(1, "a", 1, stream="sales-users")],
        "hr-users": [user(1, "b", 2, stream="hr-users"), user(2, "b", 3, stream="hr-users")],
        "users": [user(7, "c", 4)],
    }
    load(
        config,
        tmp_path,
        *[users_schema(stream, keys=["id"]) for stream in sent],
        *[u for stream in sent for u in sent[stream]],
    )
    conn = pg_db.admin()
    placed = {
        "sales-users": ("src_sales", "src_sales_raw__stream_users"),
        "hr-users": ("src_hr", "src_hr_raw__stream_users"),
        "users": (FIRST, "analytics_raw__stream_users"),
    }
    for stream, (schema, raw) in placed.items():
        assert tables_in(conn, schema) == ["users"], schema
        assert raw_owner(conn, raw) == (schema, "users", stream)
        assert_final(conn, sent[stream], schema=schema, table="users", raw_table=raw)
        assert_raw(conn, raw, sent[stream])
    assert sorted(tables_in(conn, RAW_SCHEMA)) == sorted(raw for _, raw in placed.values())
    assert not schema_exists(conn, "sales")


def test_custom_fixed_schema_keeps_streams_apart(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A format without the placeholder puts every namespaced stream in one schema: streams
    with the same table part get the collision name, and overwrite replaces only its own."""
    config = pg_db.config(
        schema=FIRST,
        namespace_definition="custom",
        namespace_format="landing",
        load_method="overwrite",
    )
    sales = [user(1, "a", 1, stream="sales-users")]
    hr = [user(1, "b", 2, stream="hr-users"), user(2, "b", 3, stream="hr-users")]
    load(config, tmp_path / "1", users_schema("sales-users"), users_schema("hr-users"), *sales, *hr)
    conn = pg_db.admin()
    assert tables_in(conn, "landing") == ["users", "users_2"]
    assert_final(conn, sales, schema="landing", table="users", raw_table=None)
    assert_final(conn, hr, schema="landing", table="users_2", raw_table=None)
    # A reload of hr-users alone replaces users_2 and leaves sales-users' table as it was.
    hr_again = [user(3, "c", 4, stream="hr-users")]
    load(config, tmp_path / "2", users_schema("hr-users"), *hr_again)
    assert tables_in(conn, "landing") == ["users", "users_2"]
    assert_final(conn, sales, schema="landing", table="users", raw_table=None)
    assert_final(conn, hr_again, schema="landing", table="users_2", raw_table=None)


# --------------------------------------------------------------------------- stream_prefix


def test_stream_prefix_and_a_prefix_change(pg_db: PgDatabase, tmp_path: Path) -> None:
    """`stream_prefix` starts every final table name and the raw name follows. A run with
    another prefix gets new tables (final and raw) and leaves the first ones untouched."""
    config = pg_db.config(schema=FIRST, stream_prefix="src_")
    first = [user(1, "a", 1, stream="sales-users"), user(2, "a", 2, stream="sales-users")]
    load(config, tmp_path / "1", users_schema("sales-users", keys=["id"]), *first)
    conn = pg_db.admin()
    assert tables_in(conn, "sales") == ["src_users"]
    raw_1 = "sales_raw__stream_src_users"
    assert tables_in(conn, RAW_SCHEMA) == [raw_1]
    assert_final(conn, first, schema="sales", table="src_users", raw_table=raw_1)

    second = [user(1, "b", 3, stream="sales-users")]
    load(
        {**config, "stream_prefix": "v2_"},
        tmp_path / "2",
        users_schema("sales-users", keys=["id"]),
        *second,
    )
    raw_2 = "sales_raw__stream_v2_users"
    assert tables_in(conn, "sales") == ["src_users", "v2_users"]
    assert sorted(tables_in(conn, RAW_SCHEMA)) == [raw_1, raw_2]
    assert raw_owner(conn, raw_2) == ("sales", "v2_users", "sales-users")
    assert_final(conn, first, schema="sales", table="src_users", raw_table=raw_1)
    assert_raw(conn, raw_1, first)
    assert_final(conn, second, schema="sales", table="v2_users", raw_table=raw_2)
    assert_raw(conn, raw_2, second)

    # Back to the first prefix: its tables are found again, dedup continues there.
    third = [user(2, "c", 4, stream="sales-users")]
    load(config, tmp_path / "3", users_schema("sales-users", keys=["id"]), *third)
    assert tables_in(conn, "sales") == ["src_users", "v2_users"]
    assert_final(conn, [first[0], third[0]], schema="sales", table="src_users", raw_table=raw_1)
    assert_final(conn, second, schema="sales", table="v2_users", raw_table=raw_2)


def test_ignore_stream_namespace_with_destination_and_prefix(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """With ignore_stream_namespace no stream has a namespace: every mode puts it in the first
    schema, named after the whole stream name behind the prefix."""
    config = pg_db.config(
        schema=FIRST,
        ignore_stream_namespace=True,
        namespace_definition="destination",
        stream_prefix="p_",
    )
    sent = {
        "sales-users": [user(1, "a", 1, stream="sales-users")],
        "hr-users": [user(1, "b", 2, stream="hr-users")],
    }
    load(
        config,
        tmp_path,
        *[users_schema(stream, keys=["id"]) for stream in sent],
        *[u for stream in sent for u in sent[stream]],
    )
    conn = pg_db.admin()
    assert tables_in(conn, FIRST) == ["p_hr_users", "p_sales_users"]
    for stream, table in {"sales-users": "p_sales_users", "hr-users": "p_hr_users"}.items():
        raw = f"analytics_raw__stream_{table}"
        assert raw_owner(conn, raw) == (FIRST, table, stream)
        assert_final(conn, sent[stream], schema=FIRST, table=table, raw_table=raw)


# --------------------------------------------------------------------------- changes between runs


def test_namespace_definition_changed_between_runs(pg_db: PgDatabase, tmp_path: Path) -> None:
    """source, then destination, then source again: each setting has its own final and raw
    tables, none reads or writes the other's rows; a schema change in destination mode
    extends only that table."""
    source = pg_db.config(schema=FIRST)
    destination = {**source, "namespace_definition": "destination"}
    run_1 = [user(1, "a", 1, stream="sales-users"), user(2, "a", 2, stream="sales-users")]
    load(source, tmp_path / "1", users_schema("sales-users", keys=["id"]), *run_1)
    run_2 = [user(1, "b", 3, stream="sales-users")]
    load(destination, tmp_path / "2", users_schema("sales-users", keys=["id"]), *run_2)
    run_2b = [user(3, "d", 4, stream="sales-users", email="d@example.com")]
    with_email = schema_message(
        "sales-users", {**USER_PROPERTIES, "email": {"type": ["string", "null"]}}, ["id"]
    )
    load(destination, tmp_path / "2b", with_email, *run_2b)
    conn = pg_db.admin()
    raw_source, raw_destination = "sales_raw__stream_users", "analytics_raw__stream_users"
    assert sorted(tables_in(conn, RAW_SCHEMA)) == [raw_destination, raw_source]
    assert_final(conn, run_1, schema="sales", table="users", raw_table=raw_source)
    assert_final(
        conn,
        [*run_2, *run_2b],
        schema=FIRST,
        table="users",
        raw_table=raw_destination,
        with_email=True,
    )
    run_3 = [user(2, "c", 4, stream="sales-users")]
    load(source, tmp_path / "3", users_schema("sales-users", keys=["id"]), *run_3)
    assert_final(conn, [run_1[0], run_3[0]], schema="sales", table="users", raw_table=raw_source)
    assert_raw(conn, raw_source, [*run_1, *run_3])
    assert_raw(conn, raw_destination, [*run_2, *run_2b])


# --------------------------------------------------------------------------- privileges


def test_stream_schema_without_create_stops_before_any_of_its_tables(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """PostgreSQL 15+: ordinary roles may not create tables in `public`. A tap-postgres stream
    `public-users` with the default `source` namespaces is refused at its SCHEMA message with
    the GRANT and the settings that avoid it; no table of it is created, and what came before
    is committed with its STATE."""
    if pg_db.server.version_num < 150000:
        pytest.skip("public is writable by every role before PostgreSQL 15")
    role = pg_db.role.name
    orders = [user(1, "o", 1, stream="orders")]
    run = run_target(
        pg_db.config(schema=FIRST),
        lines(
            users_schema("orders", keys=["id"]),
            *orders,
            state(1),
            users_schema("public-users", keys=["id"]),
            user(1, "u", 2, stream="public-users"),
            state(2),
        ),
        tmp_path,
    )
    assert run.returncode == 1, run.stderr
    assert run.error_lines() == [
        f"Role {role} may not create tables in schema public (on PostgreSQL 15 and later ordinary"
        f' roles may not create tables in public): run GRANT USAGE, CREATE ON SCHEMA "public" TO'
        f' "{role}"; or choose another schema for stream public-users (now namespace_definition'
        f" source: each stream's own namespace; schema {FIRST}): namespace_definition destination"
        " puts every table in the first schema, custom in namespace_format."
    ]
    conn = pg_db.admin()
    assert tables_in(conn, "public") == []
    assert tables_in(conn, RAW_SCHEMA) == ["analytics_raw__stream_orders"]
    assert_final(
        conn, orders, schema=FIRST, table="orders", raw_table="analytics_raw__stream_orders"
    )
    assert emitted_states(run.stdout) == [{"n": 1}]

    # The fix the message names works: the same input loads with destination.
    load(
        pg_db.config(schema=FIRST, namespace_definition="destination"),
        tmp_path / "fixed",
        users_schema("public-users", keys=["id"]),
        user(1, "u", 2, stream="public-users"),
    )
    assert tables_in(conn, FIRST) == ["orders", "users"]
    assert tables_in(conn, "public") == []


def test_stream_schema_the_role_cannot_create(pg_db: PgDatabase, tmp_path: Path) -> None:
    """Without CREATE on the database, a stream whose namespace schema does not exist is
    refused before any of its tables, naming the GRANT and the namespace settings."""
    admin = pg_db.admin()
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(FIRST)))
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(RAW_SCHEMA)))
    for schema in (FIRST, RAW_SCHEMA):
        admin.execute(
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(pg_db.role.name)
            )
        )
    admin.execute(
        sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
            sql.Identifier(pg_db.dbname), sql.Identifier(pg_db.role.name)
        )
    )
    run = run_target(
        pg_db.config(schema=FIRST),
        lines(users_schema("sales-users"), user(1, "a", 1, stream="sales-users")),
        tmp_path,
    )
    assert run.returncode == 1, run.stderr
    (line,) = run.error_lines()
    assert line.startswith(
        f"Role {pg_db.role.name} may not create schema sales in database {pg_db.dbname}: run"
        f' GRANT CREATE, TEMPORARY ON DATABASE "{pg_db.dbname}" TO "{pg_db.role.name}"; or'
        " create the schema and GRANT USAGE, CREATE ON it; or choose another schema for stream"
        " sales-users"
    ), line
    assert not schema_exists(admin, "sales")
    assert tables_in(admin, RAW_SCHEMA) == []
    assert tables_in(admin, FIRST) == []
    # destination puts it where the role may create tables.
    load(
        pg_db.config(schema=FIRST, namespace_definition="destination"),
        tmp_path / "fixed",
        users_schema("sales-users"),
        user(1, "a", 1, stream="sales-users"),
    )
    assert tables_in(admin, FIRST) == ["users"]


def test_custom_fixed_schema_checked_before_reading(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A `namespace_format` without the placeholder names a schema known before any input: it is
    checked then, and nothing is read or created."""
    if pg_db.server.version_num < 150000:
        pytest.skip("public is writable by every role before PostgreSQL 15")
    config = pg_db.config(schema=FIRST, namespace_definition="custom", namespace_format="public")
    run = run_target(config, lines(users_schema("sales-users")), tmp_path)
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith(f"Role {pg_db.role.name} may not create tables in schema public"), line
    assert line.endswith(
        "or set the namespace_format setting to a schema the target can create itself."
    )
    conn = pg_db.admin()
    assert tables_in(conn, RAW_SCHEMA) == []
    assert tables_in(conn, FIRST) == []


def test_a_placeholder_without_braces_is_refused_before_reading(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """`$SOURCE_NAMESPACE` (no braces, as a shell would have it) is not the placeholder: taken
    literally it would put every table into a schema named `_SOURCE_NAMESPACE`, so the config
    is refused before any input is read, naming the setting and the fix."""
    config = pg_db.config(
        schema=FIRST, namespace_definition="custom", namespace_format="$SOURCE_NAMESPACE"
    )
    run = run_target(
        config, lines(users_schema("sales-users"), user(1, "a", 1, stream="sales-users")), tmp_path
    )
    assert run.returncode == 1, run.stderr
    assert "Setting `namespace_format` has $SOURCE_NAMESPACE, which is not replaced" in run.stderr
    assert (
        "write ${SOURCE_NAMESPACE}, with the dollar sign and the braces (in meltano.yml"
        " \\${SOURCE_NAMESPACE}, as Meltano would replace it)."
    ) in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    conn = pg_db.admin()
    schemas = {
        name
        for (name,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
            " AND nspname NOT IN ('information_schema', 'public')"
        )
    }
    assert schemas == set()


# --------------------------------------------------------------------------- raw tables


def test_raw_only_then_typed_with_colliding_streams(pg_db: PgDatabase, tmp_path: Path) -> None:
    """Raw-only runs create no final table, yet two streams that will share a final-table name
    get separate raw tables; the first typed run types each raw table into its own final
    table (users and users_2), nothing crosses."""
    raw_only = pg_db.config(
        schema=FIRST, namespace_definition="destination", disable_type_dedupe=True
    )
    sales = [user(1, "s", 1, stream="sales-users")]
    hr = [user(1, "h", 2, stream="hr-users"), user(2, "h", 3, stream="hr-users")]
    load(
        raw_only,
        tmp_path / "raw",
        users_schema("sales-users", keys=["id"]),
        users_schema("hr-users", keys=["id"]),
        *sales,
        *hr,
    )
    conn = pg_db.admin()
    assert not schema_exists(conn, FIRST) or tables_in(conn, FIRST) == []
    raw_sales, raw_hr = "analytics_raw__stream_users", "analytics_raw__stream_users_2"
    assert sorted(tables_in(conn, RAW_SCHEMA)) == [raw_sales, raw_hr]
    typed = {**raw_only, "disable_type_dedupe": False}
    load(
        typed,
        tmp_path / "typed",
        users_schema("sales-users", keys=["id"]),
        users_schema("hr-users", keys=["id"]),
    )
    assert tables_in(conn, FIRST) == ["users", "users_2"]
    assert sorted(tables_in(conn, RAW_SCHEMA)) == [raw_sales, raw_hr]
    assert_final(conn, sales, schema=FIRST, table="users", raw_table=raw_sales)
    assert_final(conn, hr, schema=FIRST, table="users_2", raw_table=raw_hr)


def test_raw_table_of_the_previous_version_is_adopted(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A raw table whose comment records only the stream and final schema (the previous
    version) is adopted by its final table, and its comment completed; no second raw table."""
    config = pg_db.config(schema=FIRST)
    first = [user(1, "a", 1, stream="sales-users")]
    load(config, tmp_path / "1", users_schema("sales-users", keys=["id"]), *first)
    conn = pg_db.admin()
    raw = "sales_raw__stream_users"
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sql.Identifier(RAW_SCHEMA, raw),
            sql.Literal(json.dumps({"stream": "sales-users", "final_schema": "sales"})),
        )
    )
    second = [user(2, "b", 2, stream="sales-users")]
    load(config, tmp_path / "2", users_schema("sales-users", keys=["id"]), *second)
    assert tables_in(conn, RAW_SCHEMA) == [raw]
    assert raw_owner(conn, raw) == ("sales", "users", "sales-users")
    assert_final(conn, [*first, *second], schema="sales", table="users", raw_table=raw)
    assert_raw(conn, raw, [*first, *second])


def test_final_tables_in_the_raw_schema_stay_apart_from_raw_tables(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """A custom format naming the raw schema puts final tables beside the raw tables: each
    kind still finds only its own (a raw table is never taken for a final one, nor the
    reverse), on the first run and the next."""
    config = pg_db.config(schema=FIRST, namespace_definition="custom", namespace_format=RAW_SCHEMA)
    first = [user(1, "a", 1, stream="sales-users")]
    load(config, tmp_path / "1", users_schema("sales-users", keys=["id"]), *first)
    conn = pg_db.admin()
    raw = "airbyte_internal_raw__stream_users"
    assert tables_in(conn, RAW_SCHEMA) == [raw, "users"]
    second = [user(1, "b", 2, stream="sales-users"), user(2, "b", 3, stream="sales-users")]
    load(config, tmp_path / "2", users_schema("sales-users", keys=["id"]), *second)
    assert tables_in(conn, RAW_SCHEMA) == [raw, "users"]
    assert_final(conn, second, schema=RAW_SCHEMA, table="users", raw_table=raw)
    assert_raw(conn, raw, [*first, *second])


def test_existing_schema_without_create_is_refused_on_every_version(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """A stream's namespace schema that exists and belongs to someone else, with USAGE but no
    CREATE for the loading role (any PostgreSQL version): refused at the stream's SCHEMA with
    the GRANT, nothing of that stream created; the earlier stream's batch is committed."""
    admin = pg_db.admin()
    admin.execute("CREATE SCHEMA finance")
    admin.execute(
        sql.SQL("GRANT USAGE ON SCHEMA finance TO {}").format(sql.Identifier(pg_db.role.name))
    )
    orders = [user(1, "o", 1, stream="orders")]
    run = run_target(
        pg_db.config(schema=FIRST),
        lines(
            users_schema("orders"),
            *orders,
            state(1),
            users_schema("finance-users"),
            user(1, "f", 2, stream="finance-users"),
        ),
        tmp_path,
    )
    assert run.returncode == 1, run.stderr
    (line,) = run.error_lines()
    role = pg_db.role.name
    assert line.startswith(
        f"Role {role} may not create tables in schema finance: run GRANT USAGE, CREATE ON SCHEMA"
        f' "finance" TO "{role}"; or choose another schema for stream finance-users'
    ), line
    assert tables_in(admin, "finance") == []
    assert tables_in(admin, RAW_SCHEMA) == ["analytics_raw__stream_orders"]
    assert_final(
        admin, orders, schema=FIRST, table="orders", raw_table="analytics_raw__stream_orders"
    )
    assert emitted_states(run.stdout) == [{"n": 1}]
