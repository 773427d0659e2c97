"""All SQL text of the target, composed with psycopg.sql so no name or value can inject SQL.

One module per concept; every name is re-exported here, so callers write `sql.copy_into(...)`
whatever module holds it.
"""

from __future__ import annotations

from .catalog import FINAL_TABLES_OF_STREAM as FINAL_TABLES_OF_STREAM
from .catalog import INDEX_KINDS as INDEX_KINDS
from .catalog import RELATION_COMMENT as RELATION_COMMENT
from .catalog import SCHEMA_EXISTS as SCHEMA_EXISTS
from .catalog import SCHEMA_PRIVILEGES as SCHEMA_PRIVILEGES
from .catalog import SCHEMA_TABLES as SCHEMA_TABLES
from .catalog import TABLE_COLUMNS as TABLE_COLUMNS
from .catalog import TABLE_KINDS as TABLE_KINDS
from .catalog import comment_on_column as comment_on_column
from .catalog import comment_on_index as comment_on_index
from .catalog import comment_on_table as comment_on_table
from .catalog import create_schema as create_schema
from .dedup import TEMP_TABLE as TEMP_TABLE
from .dedup import create_staging_table as create_staging_table
from .dedup import create_unique_index as create_unique_index
from .dedup import create_winners_table as create_winners_table
from .dedup import delete_by_ctid as delete_by_ctid
from .dedup import delete_key_losers as delete_key_losers
from .dedup import discard_beaten_by_tombstones as discard_beaten_by_tombstones
from .dedup import distinct_winners as distinct_winners
from .dedup import drop_index as drop_index
from .dedup import fill_winners_table as fill_winners_table
from .dedup import is_delete as is_delete
from .dedup import key_terms as key_terms
from .dedup import temp_table as temp_table
from .dedup import upsert_rows as upsert_rows
from .dedup import winners_where as winners_where
from .locks import CANCEL_BACKEND as CANCEL_BACKEND
from .locks import LOCK as LOCK
from .locks import LOCK_CLASS as LOCK_CLASS
from .locks import LOCK_WAIT_SAVEPOINT as LOCK_WAIT_SAVEPOINT
from .locks import LOCK_WAITS as LOCK_WAITS
from .locks import RELEASE_LOCK_WAIT as RELEASE_LOCK_WAIT
from .locks import TRY_LOCK as TRY_LOCK
from .locks import TRY_XACT_LOCK as TRY_XACT_LOCK
from .locks import UNDO_LOCK_WAIT as UNDO_LOCK_WAIT
from .locks import XACT_LOCK as XACT_LOCK
from .locks import set_lock_timeout as set_lock_timeout
from .raw import RAW_COPY_COLUMNS as RAW_COPY_COLUMNS
from .raw import create_raw_table as create_raw_table
from .raw import has_untyped as has_untyped
from .raw import mark_typed as mark_typed
from .raw import untyped_raw_rows as untyped_raw_rows
from .session import RELEASE_SAVEPOINT as RELEASE_SAVEPOINT
from .session import ROLLBACK_TO_SAVEPOINT as ROLLBACK_TO_SAVEPOINT
from .session import SAVEPOINT as SAVEPOINT
from .session import SERVER_SESSION as SERVER_SESSION
from .session import SETTING_SOURCES as SETTING_SOURCES
from .session import session_setup as session_setup
from .session import set_session as set_session
from .session import transaction_settings as transaction_settings
from .tables import FINAL_META_COLUMNS as FINAL_META_COLUMNS
from .tables import add_column as add_column
from .tables import alter_column_type as alter_column_type
from .tables import copy_into as copy_into
from .tables import count_rows as count_rows
from .tables import create_final_table as create_final_table
from .tables import create_table_like as create_table_like
from .tables import delete_all as delete_all
from .tables import drop_table as drop_table
from .tables import has_rows as has_rows
from .tables import insert_from as insert_from
from .tables import move_rows_of as move_rows_of
from .tables import truncate as truncate
from .versions import delete_raw_before as delete_raw_before
from .versions import first_raw_id_of_generation as first_raw_id_of_generation
from .versions import other_generation as other_generation
from .views import DEPENDENT_VIEWS as DEPENDENT_VIEWS
from .views import VIEW_COLUMN_COMMENTS as VIEW_COLUMN_COMMENTS
from .views import VIEW_DEFINITION as VIEW_DEFINITION
from .views import VIEW_GRANTS as VIEW_GRANTS
from .views import VIEW_PARENTS as VIEW_PARENTS
from .views import alter_view_owner as alter_view_owner
from .views import comment_on_view as comment_on_view
from .views import create_view as create_view
from .views import drop_cascade as drop_cascade
from .views import drop_views as drop_views
from .views import grant_on as grant_on
from .views import grant_role as grant_role
