"""PostgreSQL access: connections and transactions, migrations, repositories.

>>> from shared.db import get_database
>>> with get_database().transaction() as tx:
...     tx.fetch("SELECT id FROM accounts.customers WHERE ban = :ban", {"ban": "B-1"})
"""

from shared.db.connection import Database, Row, Session, get_database, set_database

__all__ = ["Database", "Row", "Session", "get_database", "set_database"]
