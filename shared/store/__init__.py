"""The fleet's own state: the ledger of what DVSA holds and the journal of batch jobs (SQLite or PostgreSQL).

Modules: ``database`` (engine, transactions, migrate), ``tables``, ``migrations``, ``ledger``, ``batches``.
"""

from recalls.shared.extras import require

require("The store", ("worker", "api"), "sqlalchemy")
