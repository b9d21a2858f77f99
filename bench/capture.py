"""What change capture costs WARP's writes: single-row UPDATEs with the trigger off and on.

10,000 updates of a mapped column (``company_name``), one row each, on one connection
(pg8000, as WARP's application would send them), in three forms:

- each statement its own transaction (autocommit: what WARP's application does; the
  commit's WAL flush is most of each statement's time);
- all in one transaction (no commit per statement: the trigger's own CPU cost shows
  most, the worst case);
- an unmapped column (``billing_cycle``) in one transaction: the trigger's WHEN clause
  keeps its function from running at all.

Blocks of 500 updates alternate off and on (the triggers disabled and enabled), so a
change in the machine's load hits both alike; the median block counts (a transaction
form commits per block). Goal: on ≤ 1.3 x off for the autocommit form (WARP's
writes); the others are shown beside it.

Database: a fresh database created (and dropped) on TEST_DATABASE_URL's server,
else DATABASE_URL's, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconcile import create_database, drop_database, server_url

from shared.capture import install
from shared.capture.watch import CHANGES, TRIGGERS
from shared.db import Database
from shared.db.connection import url_connector

GOAL = 1.3
ROWS = 1_000
BLOCK = 500
FORMS = {
    "autocommit, mapped column": ("company_name", True),
    "one transaction, mapped column": ("company_name", False),
    "one transaction, unmapped column": ("billing_cycle", False),
}


def seed(database: Database) -> list[str]:
    with database.transaction() as tx:
        rows = tx.fetch(
            "INSERT INTO accounts.customers (ban, company_name, customer_type, status, contact) "
            "SELECT 'CAP-' || i, 'Company ' || i, 'POSTPAID', 'ACTIVE', "
            "jsonb_build_object('email', 'a' || i || '@x.example') "
            "FROM generate_series(1, :n) AS i RETURNING CAST(id AS text) AS id",
            {"n": ROWS},
        )
    return [r["id"] for r in rows]


def run(connection: Any, ids: list[str], column: str, updates: int) -> float:
    """Seconds for ``updates`` single-row UPDATEs of ``column`` (a commit at the end when
    the connection is not in autocommit). Every value is new: an equal one is no change."""
    cursor = connection.cursor()
    sql = f"UPDATE accounts.customers SET {column} = :v WHERE id = CAST(:id AS uuid)"
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    for i in range(updates):
        cursor.execute(sql, {"v": f"{tag}-{i}", "id": ids[i % len(ids)]})
    if not connection.autocommit:
        connection.commit()
    return time.perf_counter() - started


def toggle(database: Database, on: bool) -> None:
    """Switch the installed capture triggers on or off (cheaper than installing them)."""
    action = "ENABLE" if on else "DISABLE"
    with database.transaction() as tx:
        for trigger in TRIGGERS.values():
            tx.execute(f"ALTER TABLE accounts.customers {action} TRIGGER {trigger}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    url = server_url()
    db_url, name = create_database(url)
    try:
        database = Database(url_connector(db_url), pool_size=2)
        ids = seed(database)
        times: dict[str, dict[bool, list[float]]] = {f: {False: [], True: []} for f in FORMS}
        install.enable(database)
        # Blocks of BLOCK updates, off and on in turn: a change of the machine's load
        # (other work on the same cores) hits both sides alike.
        blocks = max(1, args.updates // BLOCK)
        for _ in range(args.rounds):
            for form, (column, autocommit) in FORMS.items():
                connection = url_connector(db_url)()  # one connection, as WARP's would be
                connection.autocommit = autocommit
                for _ in range(blocks):
                    for on in (False, True):
                        toggle(database, on)
                        times[form][on].append(run(connection, ids, column, BLOCK))
                connection.close()
        with database.transaction() as tx:
            captured = int(tx.fetch_value(f"SELECT count(*) FROM {CHANGES}"))
        database.close()
    finally:
        drop_database(url, name)
    print(
        f"{args.updates:,} single-row UPDATEs per form and side, in blocks of {BLOCK} "
        f"alternating off and on; the median block x {args.updates // BLOCK}"
    )
    print()
    print("| form | capture off | capture on | on / off | µs added per update |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for form, by in times.items():
        # The median block, scaled to the whole run.
        off = statistics.median(by[False]) * len(by[False]) / args.rounds
        on = statistics.median(by[True]) * len(by[True]) / args.rounds
        ratio = on / off
        if form.startswith("autocommit"):
            worst = max(worst, ratio)
        added = (on - off) / args.updates * 1e6
        print(f"| {form} | {off:.2f} s | {on:.2f} s | {ratio:.2f} | {added:.0f} |")
    print()
    # The two mapped-column forms, capture on.
    expected = args.rounds * max(1, args.updates // BLOCK) * BLOCK * 2
    print(f"changes captured: {captured:,} (expected {expected:,})")
    verdict = "met" if worst <= GOAL else "NOT met"
    print(f"autocommit ratio {worst:.2f} (goal ≤ {GOAL}: {verdict})")
    if captured != expected:
        sys.exit(1)


if __name__ == "__main__":
    main()
