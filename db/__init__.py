"""PostgreSQL: tables, engine and session, repositories, Alembic migrations."""
