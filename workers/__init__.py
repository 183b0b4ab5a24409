"""Everything that consumes: the worker runtime, the per-verb handling and the outcome reporting."""

from recalls.shared.extras import require

require(
    "The worker",
    ("worker",),
    "aiohttp",
    "authlib",
    "httpcore",
    "httpx",
    "prometheus_client",
    "redis",
    "rich",
    "sqlalchemy",
)
