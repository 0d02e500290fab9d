"""The SQL store: one implementation over SQLite (embedded default) and PostgreSQL."""
