"""SQL migration files (``NNNN_description.sql``), read by ``shared.db.migrate``."""
