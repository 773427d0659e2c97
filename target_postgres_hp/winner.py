"""The dedup winner rule (SPEC §6.3), written once. Both SQL forms the loads need are made from
it: an ORDER BY that puts the winner of a set of rows first (`order_by`, for the rows of one
batch) and a predicate that says whether a newer row beats an older one (`beats`, for a batch
row against the table's row or a recorded delete).

The rule ranks two rows of the same key by, in order:

1. their Singer table versions (`_airbyte_generation_id`), but only when both rows carry one: a
   reload's rows replace the previous load's rows, whatever their cursors, before its
   ACTIVATE_VERSION removes what it did not send; a row without a version (0) is ranked by
   what follows, so incremental records after a versioned load still follow their cursor;
2. the cursor (the stream's first bookmark property), a NULL cursor losing to any value;
3. `_airbyte_extracted_at`;
4. arrival: the later record wins (raw ids are time-ordered; in `beats` the new row is always
   the later one).

Rule 1 compares only some pairs, so it orders a set completely only when its rows all carry a
version or all lack one; in a set that mixes the two (records of a versioned load and
unversioned ones in one batch), `order_by` ranks the versioned rows first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

GENERATION = "_airbyte_generation_id"
EXTRACTED_AT = "_airbyte_extracted_at"
ARRIVAL = "_airbyte_raw_id"


@dataclass(frozen=True)
class Criterion:
    """One column of the rule; a greater value wins, NULL the least."""

    column: str
    #: Compared only when both rows have a non-zero value (table versions).
    between_nonzero_only: bool = False

    def greater(self, new: sql.Composable, old: sql.Composable) -> sql.Composed:
        """SQL: `new` ranks above `old` on this column."""
        if self.between_nonzero_only:
            template = (
                "(coalesce({new}.{c}, 0) <> 0 AND coalesce({old}.{c}, 0) <> 0"
                " AND {new}.{c} > {old}.{c})"
            )
        else:
            template = "({new}.{c} IS NOT NULL AND ({old}.{c} IS NULL OR {new}.{c} > {old}.{c}))"
        return sql.SQL(template).format(new=new, old=old, c=sql.Identifier(self.column))

    def tie(self, new: sql.Composable, old: sql.Composable) -> sql.Composed:
        """SQL: this column does not decide between `new` and `old`."""
        if self.between_nonzero_only:
            template = (
                "(coalesce({new}.{c}, 0) = coalesce({old}.{c}, 0)"
                " OR coalesce({new}.{c}, 0) = 0 OR coalesce({old}.{c}, 0) = 0)"
            )
        else:
            template = "({new}.{c} IS NOT DISTINCT FROM {old}.{c})"
        return sql.SQL(template).format(new=new, old=old, c=sql.Identifier(self.column))


def criteria(cursor: str | None) -> list[Criterion]:
    """The rule's columns before arrival, most significant first."""
    rule = [Criterion(GENERATION, between_nonzero_only=True)]
    if cursor is not None:
        rule.append(Criterion(cursor))
    rule.append(Criterion(EXTRACTED_AT))
    return rule


def order_by(keys: Sequence[str], cursor: str | None) -> sql.Composed:
    """ORDER BY items: the key columns, then each key's winner first."""
    items: list[sql.Composable] = [sql.Identifier(key) for key in keys]
    items += [
        sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(criterion.column))
        for criterion in criteria(cursor)
    ]
    items.append(sql.SQL("{} DESC").format(sql.Identifier(ARRIVAL)))
    return sql.SQL(", ").join(items)


def beats(new: sql.Composable, old: sql.Composable, cursor: str | None) -> sql.Composed:
    """SQL, never NULL: row `new`, which arrived after row `old` of the same key, wins."""
    decided: sql.Composable = sql.SQL("TRUE")  # arrival: `new` is the later
    for criterion in reversed(criteria(cursor)):
        decided = sql.SQL("({} OR ({} AND {}))").format(
            criterion.greater(new, old), criterion.tie(new, old), decided
        )
    return sql.Composed([decided])
