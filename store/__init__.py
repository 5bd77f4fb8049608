"""Postgres: the pool, migrations, and the order / attempt / event queries and state transitions."""
