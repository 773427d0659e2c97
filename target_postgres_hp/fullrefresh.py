"""A full refresh's tables (SPEC §6.1): the side table a load is built in, found again when
an earlier run left its load unfinished, and swapped in for the live rows when the load ends."""

from __future__ import annotations

import logging

import psycopg

from target_postgres_hp import sql
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.loading import PgConnection
from target_postgres_hp.ownership import LOAD_OF, comment_json, comment_value

logger = logging.getLogger("target-postgres-hp.connector")


def open_load(
    connector: PostgresConnector,
    side: tuple[str, str],
    like: tuple[str, str],
    raw: tuple[str, str] | None,
    stream: str,
    generation: int | None,
) -> str | None:
    """Find the load of the same Singer table version (`generation`; None when the stream's
    records carry no table version) that an earlier run began, so this run's records go on
    where that run's last STATE left it; return the raw id from which that load's raw rows
    start. None when there is none: the caller starts a new load.

    Only records of the same table version continue a load (SPEC §6.1): a tap that
    restarts its full-table sync without table versions sends every record again, so the
    unfinished load is discarded (and logged) rather than doubled. A load of this version
    may also have been completed already (swapped in before the run died, ahead of its
    next STATE): the records re-sent from that STATE then continue it from the live rows,
    which would otherwise be replaced by the re-sent records alone."""
    with connector.serial_connection() as conn:
        found = conn.execute(sql.RELATION_COMMENT, (*side, sql.TABLE_KINDS)).fetchone()
        if found is None:
            if generation is None:
                return None
            return _continue_completed_load(conn, side, like, raw, stream, generation)
        since = comment_value(found[0], "since")
        if generation is not None and since is not None:
            other = conn.execute(sql.other_generation(*side), (generation,)).fetchone()
            if other is None:
                logger.info(
                    "Stream %s: continuing the full refresh of table version %s an earlier"
                    " run left unfinished in %s.%s",
                    stream,
                    generation,
                    *side,
                )
                return since
        counted = conn.execute(sql.count_rows(*side)).fetchone()
        conn.execute(sql.drop_table(*side))
    logger.warning(
        "Stream %s: discarded the unfinished full refresh an earlier run left in %s.%s"
        " (%s rows): %s, so this run's load starts afresh",
        stream,
        *side,
        counted[0] if counted else 0,
        "its records carry no table version"
        if generation is None
        else f"it is not of table version {generation}",
    )
    return None


def raw_load_start(
    connector: PostgresConnector, raw: tuple[str, str], stream: str, generation: int
) -> str | None:
    """Where the raw rows of table version `generation` start, in the raw table of a layout
    without a final table: an earlier run's load of that version, which this run's records
    continue (its STATEs covered those rows), as `open_load` continues a side table. None
    when the raw table holds no row of that version."""
    with connector.serial_connection() as conn:
        started = conn.execute(sql.first_raw_id_of_generation(*raw), (generation,)).fetchone()
    if started is None or started[0] is None:
        return None
    logger.info(
        "Stream %s: continuing the full refresh of table version %s an earlier run began in %s.%s",
        stream,
        generation,
        *raw,
    )
    return str(started[0])


def _continue_completed_load(
    conn: PgConnection,
    side: tuple[str, str],
    like: tuple[str, str],
    raw: tuple[str, str] | None,
    stream: str,
    generation: int,
) -> str | None:
    """Begin the side table from the live table when the live rows are a completed load
    of table version `generation`; return where its raw rows start, else None."""
    if conn.execute(sql.has_rows(*like)).fetchone() is None:
        return None
    if conn.execute(sql.other_generation(*like), (generation,)).fetchone() is not None:
        return None
    # Without a raw table (direct layout) the live rows tell where the load's records start.
    started = conn.execute(sql.first_raw_id_of_generation(*(raw or like)), (generation,)).fetchone()
    if started is None or started[0] is None:
        return None
    since = str(started[0])
    columns = [column for column, _, _ in conn.execute(sql.TABLE_COLUMNS, like).fetchall()]
    conn.execute(sql.create_table_like(*side, *like))
    conn.execute(sql.comment_on_table(*side, comment_json({LOAD_OF: stream, "since": since})))
    copied = conn.execute(sql.insert_from(*side, *like, columns)).rowcount
    logger.info(
        "Stream %s: records of table version %s continue the load already in %s.%s"
        " (%s rows), which an earlier run completed before its last STATE",
        stream,
        generation,
        *like,
        copied,
    )
    return since


def replace_contents(
    connector: PostgresConnector,
    final: tuple[str, str] | None,
    side: tuple[str, str] | None,
    raw: tuple[str, str] | None,
    since: str | None,
    removed_keys: tuple[str, str] | None = None,
) -> int:
    """End a full refresh atomically (SPEC §6.1): the final table's rows become the side
    table's, inside the existing table so views on it stay; the side table goes, and so do the
    keys earlier incremental loads removed (`removed_keys`: the table holds exactly this load
    now, and later records compete with its rows alone); raw rows of earlier loads go (when
    the layout has a raw table). Returns the number of rows the load left (final, else raw)."""
    with connector.serial_connection() as conn:
        count = 0
        if final is not None and side is not None:
            columns = [column for column, _, _ in conn.execute(sql.TABLE_COLUMNS, side).fetchall()]
            try:
                with conn.transaction():
                    conn.execute(sql.truncate(*final))
            except psycopg.errors.FeatureNotSupported:
                # TRUNCATE is refused when a foreign key points at the table.
                conn.execute(sql.delete_all(*final))
            count = conn.execute(sql.insert_from(*final, *side, columns)).rowcount
            conn.execute(sql.drop_table(*side))
            if removed_keys is not None:
                conn.execute(sql.drop_table(*removed_keys))
        if raw is not None:
            if since is not None:
                conn.execute(sql.delete_raw_before(*raw), (since,))
            else:
                conn.execute(sql.delete_all(*raw))
            if final is None:
                found = conn.execute(sql.count_rows(*raw)).fetchone()
                count = found[0] if found else 0
    return count
