"""Thin data access for WARP's customers and the sync tables: one module per table.

Every function takes the open :class:`~shared.db.Session` first, so callers decide
the transaction boundaries; none holds business rules. SQL uses parameters only;
JSONB values travel as JSON text cast with ``::jsonb`` (see :mod:`._json`).
Rows come back as dicts keyed by column name (UUIDs as :class:`uuid.UUID`, JSONB
parsed, timestamps timezone-aware).
"""
