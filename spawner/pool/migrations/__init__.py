"""Alembic migrations of the pool's database (ledger and trainings); see ``gpupool.pool.migrate``."""
