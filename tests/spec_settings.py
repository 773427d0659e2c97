"""The settings SPEC §2 documents, for the tests that check the target declares them."""

#: The documented settings, in the order of SPEC §2's table.
SPEC_SETTINGS = (
    "host",
    "port",
    "username",
    "password",
    "database",
    "schema",
    "raw_data_schema",
    "jdbc_url_params",
    "ssl",
    "ssl_mode",
    "tunnel_method",
    "drop_cascade",
    "load_method",
    "stream_load_methods",
    "disable_type_dedupe",
    "table_layout",
    "cdc_deletion_mode",
    "ignore_stream_namespace",
    "batch_size_rows",
    "batch_root",
    "batch_wait_limit_seconds",
)

#: The MeltanoLabs target-postgres names accepted as aliases (SPEC §2).
ALIASES = (
    "user",
    "default_target_schema",
    "ssl_enable",
    "ssl_certificate_authority",
    "ssl_client_certificate",
    "ssl_client_private_key",
    "ssh_tunnel",
    "sqlalchemy_url",
)
