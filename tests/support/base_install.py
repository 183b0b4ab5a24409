"""What the base install of recalls-fleet (the publisher, docs/design.md decision 40) must never bring."""

from __future__ import annotations

# The fleet's web, database and HTTP-server stack, as canonical distribution names.
NEVER_IN_BASE = frozenset(
    {"fastapi", "starlette", "uvicorn", "sqlalchemy", "asyncpg", "aiosqlite", "aiohttp"},
)
