"""Alembic's environment for the pool's database.

It runs only through ``gpupool.pool.migrate``, which hands over an open connection (in
its transaction, under the ledger's lock) as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from gpupool.pool.migrate import VERSION_TABLE, target_metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "gpupool's migrations run through `gpupool db upgrade` or the pool service's start, "
        "not through the alembic command"
    )
context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    # SQLite cannot ALTER most things: batch mode copies the table instead
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
