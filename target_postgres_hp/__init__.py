"""target-postgres-hp: a Singer target for PostgreSQL with raw and typed, deduplicated tables."""
