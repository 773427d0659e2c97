"""Objects that depend on a column the target must change (SPEC §8).

Views the loading role may drop are saved (definition, options, comment, column comments,
grants, owner), dropped, and recreated after the change, all in the caller's transaction. Any
other dependent (a view of another role, a materialized view, a view with triggers or rules of
its own, and whatever depends on those) stops the run before anything changes, unless
`drop_cascade` is set: then those are dropped with CASCADE, each one logged. One the role may
not drop at all (another role owns it and its schema) stops the run before anything changes,
whatever `drop_cascade` says, naming its owner.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from target_postgres_hp import sql
from target_postgres_hp.errors import DependentNotDroppable, DependentObjects

logger = logging.getLogger("target-postgres-hp.dependents")

_KIND_NAMES = {"v": "view", "m": "materialized view"}
_DROP_KINDS = {"v": "VIEW", "m": "MATERIALIZED VIEW"}
_OPTION = re.compile(r"([a-z_]+)=(.*)")
_PRIVILEGE = re.compile(r"[A-Z ]+")


@dataclass
class Dependent:
    """A relation whose rule depends on the changed columns, directly or through others."""

    oid: int
    schema: str
    name: str
    kind: str
    depth: int
    droppable: bool
    owner: str
    own_triggers_or_rules: bool
    #: The role may DROP it (owns it or its schema): CASCADE checks only the objects named.
    may_drop: bool
    parents: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        """How the object is named to the user: `view sales.users_v (owned by analyst)`."""
        kind = _KIND_NAMES.get(self.kind, "object")
        return f"{kind} {self.schema}.{self.name} (owned by {self.owner})"

    @property
    def recreatable(self) -> bool:
        """A plain view the loading role may drop and create again."""
        return self.kind == "v" and self.droppable and not self.own_triggers_or_rules


@dataclass
class SavedView:
    """Everything needed to create a dropped view again."""

    dependent: Dependent
    definition: str
    options: list[tuple[str, str]]
    comment: str | None
    column_comments: list[tuple[str, str]]
    grants: list[tuple[str | None, str, bool]]


Conn = psycopg.Connection[tuple[Any, ...]]


def find_dependents(conn: Conn, schema: str, table: str, columns: Sequence[str]) -> list[Dependent]:
    """Every view-like object depending on `columns` of the table, parents before children."""
    rows = conn.execute(
        sql.DEPENDENT_VIEWS, {"schema": schema, "table": table, "columns": list(columns)}
    ).fetchall()
    found = [Dependent(*row) for row in rows]
    if found:
        by_oid = {item.oid: item for item in found}
        for child, parent in conn.execute(sql.VIEW_PARENTS, ([item.oid for item in found],)):
            if parent in by_oid:
                by_oid[child].parents.add(parent)
    return found


def _lost_with(found: list[Dependent]) -> list[Dependent]:
    """The objects that cannot be recreated, and every object depending on one of them."""
    lost: set[int] = set()
    for item in found:  # parents come first
        if not item.recreatable or item.parents & lost:
            lost.add(item.oid)
    return [item for item in found if item.oid in lost]


def _save(conn: Conn, item: Dependent) -> SavedView:
    definition, reloptions, comment = conn.execute(sql.VIEW_DEFINITION, (item.oid,)).fetchone() or (
        "",
        None,
        None,
    )
    options = []
    for option in reloptions or []:
        matched = _OPTION.fullmatch(option)
        if matched:
            options.append((matched.group(1), matched.group(2)))
    return SavedView(
        dependent=item,
        definition=definition,
        options=options,
        comment=comment,
        column_comments=list(conn.execute(sql.VIEW_COLUMN_COMMENTS, (item.oid,)).fetchall()),
        grants=[
            (grantee, privilege, bool(grantable))
            for grantee, privilege, grantable in conn.execute(sql.VIEW_GRANTS, (item.oid,))
            if _PRIVILEGE.fullmatch(privilege)
        ],
    )


def _recreate(conn: Conn, saved: SavedView, current_user: str) -> None:
    view = saved.dependent
    conn.execute(sql.create_view(view.schema, view.name, saved.definition, saved.options))
    if saved.comment is not None:
        conn.execute(sql.comment_on_view(view.schema, view.name, saved.comment))
    for column, comment in saved.column_comments:
        conn.execute(sql.comment_on_column(view.schema, view.name, column, comment))
    for grantee, privilege, grantable in saved.grants:
        conn.execute(sql.grant_on(view.schema, view.name, privilege, grantee, grantable=grantable))
    if view.owner != current_user:
        conn.execute(sql.alter_view_owner(view.schema, view.name, view.owner))


@contextmanager
def dependents_set_aside(
    conn: Conn,
    schema: str,
    table: str,
    columns: Sequence[str],
    *,
    drop_cascade: bool,
    change: str,
) -> Iterator[None]:
    """Run the block (which changes `columns` of the table) with the objects depending on those
    columns out of the way, and put the recreatable ones back afterwards.

    `change` describes the change for the refusal ("change the type of column amount of
    tap_data.users"). Everything runs in the caller's transaction: if the block or a
    recreation fails, the caller's rollback restores every view.
    """
    found = find_dependents(conn, schema, table, columns)
    if not found:
        yield
        return
    lost = _lost_with(found)
    lost_oids = {item.oid for item in lost}
    current_user = conn.execute(psycopg.sql.SQL("SELECT current_user")).fetchone()
    user = current_user[0] if current_user else ""
    for item in lost:
        # Dropped by name (the others go with it by CASCADE): the role must be allowed to.
        if not item.parents & lost_oids and not item.may_drop:
            grant = sql.grant_role(item.owner, user).as_string(None)
            raise DependentNotDroppable(change, item.label, item.owner, user, grant)
    if lost and not drop_cascade:
        names = "; ".join(item.label for item in lost)
        msg = (
            f"The target must {change}, but objects it cannot drop and recreate depend on"
            f" it: {names}. Nothing was changed: drop or change these objects, or set"
            " drop_cascade: true to let the target drop them with CASCADE (their data and"
            " definitions are lost)"
        )
        raise DependentObjects(msg)
    kept = [_save(conn, item) for item in found if item.oid not in lost_oids]
    for item in lost:
        if not item.parents & lost_oids:
            conn.execute(
                sql.drop_cascade(_DROP_KINDS.get(item.kind, "VIEW"), item.schema, item.name)
            )
    for item in lost:
        logger.warning(
            "drop_cascade: dropped %s, which depended on %s.%s, to %s",
            item.label,
            schema,
            table,
            change,
        )
    if kept:
        conn.execute(sql.drop_views([(v.dependent.schema, v.dependent.name) for v in kept]))
    yield
    for saved in kept:
        view = saved.dependent
        try:
            with conn.transaction():
                _recreate(conn, saved, user)
        except psycopg.Error as error:
            reason = error.diag.message_primary or type(error).__name__
            if not drop_cascade:
                msg = (
                    f"The target must {change}, but {view.label} depends on it and no longer"
                    f" compiles afterwards ({reason}). Nothing was changed: change the view,"
                    " or set drop_cascade: true to let the target drop it"
                )
                raise DependentObjects(msg) from None
            logger.warning(
                "drop_cascade: dropped %s, which no longer compiles after the target had to"
                " %s (%s)",
                view.label,
                change,
                reason,
            )
            continue
        logger.info("Recreated %s after setting it aside to %s", view.label, change)
