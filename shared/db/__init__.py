"""PostgreSQL access: connections and transactions, migrations, repositories.

>>> with engine.database.transaction() as tx:
...     tx.fetch("SELECT id FROM accounts.customers WHERE ban = :ban", {"ban": "B-1"})
"""

from shared.db.connection import Database, Row, Session

__all__ = ["Database", "Row", "Session"]
