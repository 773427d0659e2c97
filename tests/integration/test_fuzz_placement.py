"""SPEC §4.1, §5 and §6.4 under random stream names and namespace settings: sequences of runs
of the real executable, each with random `namespace_definition`, `namespace_format`,
`stream_prefix` and `ignore_stream_namespace`, streams drawn so that many of them want the same
table (same table part in other namespaces, names equal after conformance, case variants, names
that look like collision suffixes). After every run:

- every record of the run is in exactly one final table and one raw table, each recording the
  record's stream as its owner, and no table holds records of two streams;
- that final table is in the schema the settings name, and is named after the stream (prefix,
  then the table part or the whole name) or that name with a collision suffix;
- a stream loaded again under settings it was loaded with before writes to the same final and
  raw tables as then, whatever order the streams arrive in;
- every property's value is in its column (names holding NUL, names cleaning alike), the final
  row's `_airbyte_meta` names each property whose NUL was removed, and the raw row keeps every
  value under a key of its own.

Stream names include ones that clean to the same name (empty, `_`, ` `, `-`, names differing
only in characters that become `_`); two explicit examples send those together.

Bounds: HP_PLACEMENT_EXAMPLES sequences (default 8) of up to 3 runs of up to 5 streams.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from random import Random
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from servers import PgDatabase, PostgresServer

from .targetrun import messages, run_target, schema_message

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("HP_PLACEMENT_EXAMPLES", "8"))
FIRST = "analytics"
RAW_SCHEMA = "airbyte_internal"
SOURCE_NAMESPACE = "${SOURCE_NAMESPACE}"

NAMESPACES = ["sales", "Sales", "hr", "a_b", "a", "b"]
TABLES = ["users", "Users", "b_users", "users_2", "u-x", "a_b_users"]
STREAMS = st.one_of(
    st.builds(lambda n, t: f"{n}-{t}", st.sampled_from(NAMESPACES), st.sampled_from(TABLES)),
    st.builds(lambda n, t: f"db-{n}-{t}", st.sampled_from(NAMESPACES), st.sampled_from(TABLES)),
    st.sampled_from(TABLES),
    st.builds(lambda n, t: f"{n}_{t}", st.sampled_from(NAMESPACES), st.sampled_from(TABLES)),
    # Names that clean to one name: the empty name, blanks and separators all become `_`.
    st.sampled_from(["", "_", " ", "-", "--", "__", "u x", "u.x", "u_x", "u\tx"]),
)
#: Property names beside `id`, some holding NUL, some cleaning to the same column name or to
#: the name another one has once its NUL is removed (SPEC §9).
PROPERTIES = st.lists(
    st.sampled_from(["a\x00b", "ab", "a_b", "a b", "\x00", "_", "ab\x00", "\x00ab"]),
    unique=True,
    max_size=4,
)
SETTINGS = st.fixed_dictionaries(
    {
        "namespace_definition": st.sampled_from(["source", "destination", "custom"]),
        "namespace_format": st.sampled_from([SOURCE_NAMESPACE, f"c_{SOURCE_NAMESPACE}", "fixed"]),
        "stream_prefix": st.sampled_from(["", "p_", "P-"]),
        "ignore_stream_namespace": st.booleans(),
    }
)
#: Settings under which the names that clean to `_` want one table.
SAME_CLEANED = [
    {
        "namespace_definition": definition,
        "namespace_format": "fixed",
        "stream_prefix": "",
        "ignore_stream_namespace": ignore,
    }
    for definition, ignore in (("source", False), ("destination", True))
]
RUNS = st.lists(
    st.tuples(
        SETTINGS,
        st.lists(STREAMS, min_size=1, max_size=5, unique=True),
        st.randoms(),
        PROPERTIES,
    ),
    min_size=1,
    max_size=3,
)


def conform(name: str) -> str:
    """Final-table identifier rule of SPEC §5 for the short names drawn here."""
    return "".join(c if c == "_" or c.isalnum() else "_" for c in name) or "_"


def value_of(prop: str, record_id: int) -> str:
    return f"{prop!r} of {record_id}"


def expected_place(stream: str, chosen: dict[str, Any]) -> tuple[str, str]:
    """(schema, table name before any suffix) as SPEC §6.4 says."""
    parts = stream.split("-")
    namespace, table = None, stream
    if len(parts) in (2, 3) and all(parts):
        namespace, table = parts[-2], parts[-1]
    if chosen["ignore_stream_namespace"]:
        namespace, table = None, stream
    definition = chosen["namespace_definition"]
    if namespace is None or definition == "destination":
        schema = FIRST
    elif definition == "custom":
        schema = chosen["namespace_format"].replace(SOURCE_NAMESPACE, namespace)
    else:
        schema = namespace
    return conform(schema), conform(chosen["stream_prefix"] + table)


def config_of(db: PgDatabase, chosen: dict[str, Any]) -> dict[str, Any]:
    config = db.config(schema=FIRST, load_method="append", **chosen)
    if chosen["namespace_definition"] != "custom":
        del config["namespace_format"]
    return config


def located(conn: psycopg.Connection[Any]) -> tuple[dict[int, set[tuple[str, str]]], ...]:
    """Where every record id is, in final and in raw tables, and each table's recorded
    stream."""
    final: dict[int, set[tuple[str, str]]] = defaultdict(set)
    raw: dict[int, set[tuple[str, str]]] = defaultdict(set)
    owners: dict[tuple[str, str], str] = {}
    tables = conn.execute(
        "SELECT n.nspname, c.relname, obj_description(c.oid, 'pg_class')"
        " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_%'"
    ).fetchall()
    for schema, table, comment in tables:
        recorded = json.loads(comment) if comment else {}
        owners[(schema, table)] = recorded.get("stream")
        if schema == RAW_SCHEMA:
            query = sql.SQL("SELECT (_airbyte_data->>'id')::bigint FROM {}")
            found = raw
        else:
            query = sql.SQL("SELECT id FROM {}")
            found = final
        for (record_id,) in conn.execute(query.format(sql.Identifier(schema, table))):
            found[record_id].add((schema, table))
    return final, raw, owners  # type: ignore[return-value]


def check_values(
    conn: psycopg.Connection[Any], table: tuple[str, str], record_id: int, props: list[str]
) -> None:
    """The final row of `record_id` holds each property's value in the property's column, and
    its `_airbyte_meta` records the NUL removed from each name (and nothing else)."""
    columns = {
        json.loads(comment)["property"]: name
        for name, comment in conn.execute(
            "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute AS a"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (sql.Identifier(*table).as_string(conn),),
        )
        if comment
    }
    found = conn.execute(
        sql.SQL("SELECT to_jsonb(t) FROM {} AS t WHERE id = %s").format(sql.Identifier(*table)),
        (record_id,),
    ).fetchone()
    assert found is not None
    (row,) = found
    for prop in props:
        assert row[columns[prop]] == value_of(prop, record_id), (table, prop, row)
    changes = sorted(change["field"] for change in row["_airbyte_meta"]["changes"])
    assert changes == sorted(p.replace("\x00", "") for p in props if "\x00" in p), row
    for change in row["_airbyte_meta"]["changes"]:
        assert change["change"] == "TRUNCATED", change


def check_raw_values(
    conn: psycopg.Connection[Any], table: tuple[str, str], record_id: int, props: list[str]
) -> None:
    """The raw row of `record_id` keeps every value, each under its own key."""
    found = conn.execute(
        sql.SQL("SELECT _airbyte_data FROM {} WHERE _airbyte_data->>'id' = %s").format(
            sql.Identifier(*table)
        ),
        (str(record_id),),
    ).fetchone()
    assert found is not None
    (data,) = found
    assert sorted(value for key, value in data.items() if key != "id") == sorted(
        value_of(prop, record_id) for prop in props
    ), (table, data)


def check_sequence(server: PostgresServer, root: Path, runs: list[Any]) -> None:
    with PgDatabase.fresh(server) as db:
        conn = db.admin()
        stream_of: dict[int, str] = {}
        seen: dict[tuple[str, str], tuple[tuple[str, str], tuple[str, str]]] = {}
        next_id = 1
        for number, (chosen, streams, rnd, props) in enumerate(runs):
            order = list(streams)
            rnd.shuffle(order)
            sent: dict[str, int] = {}
            lines: list[Any] = []
            properties = {"id": {"type": "integer"}, **{p: {"type": "string"} for p in props}}
            for stream in order:
                lines.append(schema_message(stream, properties))
            for stream in order:
                sent[stream] = next_id
                stream_of[next_id] = stream
                data = {"id": next_id, **{p: value_of(p, next_id) for p in props}}
                lines.append({"type": "RECORD", "stream": stream, "record": data})
                next_id += 1
            run = run_target(
                config_of(db, chosen), messages(*lines), root / f"{db.dbname}-{number}"
            )
            assert run.returncode == 0, (chosen, order, run.stderr[-3000:])
            final, raw, owners = located(conn)
            for record_id, stream in stream_of.items():
                assert len(final[record_id]) == 1, (stream, final[record_id])
                assert len(raw[record_id]) == 1, (stream, raw[record_id])
                (final_table,) = final[record_id]
                (raw_table,) = raw[record_id]
                assert owners[final_table] == stream, (final_table, owners[final_table], stream)
                assert owners[raw_table] == stream, (raw_table, owners[raw_table], stream)
            for stream, record_id in sent.items():
                (final_table,) = final[record_id]
                (raw_table,) = raw[record_id]
                schema, name = expected_place(stream, chosen)
                assert final_table[0] == schema, (stream, chosen, final_table)
                suffix = re.fullmatch(re.escape(name) + r"(_[0-9]+)?", final_table[1])
                assert suffix, (stream, chosen, final_table)
                check_values(conn, final_table, record_id, props)
                check_raw_values(conn, raw_table, record_id, props)
                key = (stream, json.dumps(expected_place(stream, chosen)))
                if key in seen:
                    assert seen[key] == (final_table, raw_table), (stream, chosen)
                seen[key] = (final_table, raw_table)


@pytest.mark.timeout(max(300, EXAMPLES * 60))
def test_random_streams_and_namespace_settings(pg16: PostgresServer, tmp_path: Path) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        phases=[Phase.explicit, Phase.generate],
    )
    @given(runs=RUNS)
    @example(runs=[(SAME_CLEANED[0], ["", "_", " ", "-"], Random(1), ["a\x00b", "ab", "\x00"])])
    @example(
        runs=[
            (setting, ["-", " ", "_", "", "u x"], Random(2), ["ab\x00", "a b"])
            for setting in SAME_CLEANED
        ]
    )
    def check(runs: list[Any]) -> None:
        check_sequence(pg16, tmp_path, runs)

    check()
