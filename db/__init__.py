"""PostgreSQL: tables, engine and session, repositories, Alembic migrations.

One way to each thing:

* SQL lives in repository functions, one module per resource in `db/repositories/`; code
  outside `db/` never builds a statement. Repositories take the caller's session or
  connection and never commit.
* Most statements are SQLAlchemy (ORM or Core). The hot ones (a charge's two statements,
  the projection, the entitlement check, the outbox and Stripe inbox claims) are raw
  psycopg SQL in the repository of their tables, run through the one executor
  `db.driver.fetch_all`, their column lists derived from the table models (`db.models`).
* A transaction is a unit of work that commits when it completes and rolls back when it
  raises: `db.engine.unit_of_work` / `transaction` blocks, or for an API request its
  session dependency (`api.deps`, which states the rule for routes and services). An
  activity's single statement runs on an autocommit connection: one statement is atomic.
"""
