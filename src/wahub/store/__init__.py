"""Persistence: schema, migrations, the database handle and repositories."""
