"""The live dashboard of ``recalls api``: one page an operator leaves open.

It shows the fleet's DVSA calls per second per verb against the rate limit, throttling, queue depths,
retries, dead letters, the token, the workers, and the caller's batch checks, refreshed every second.
Modules: ``window`` (the stats of the last minutes, added up per second), ``feed`` (reading them and
the queue depths from RabbitMQ), ``batches`` (a key's recent batches), ``board`` (the snapshot),
``routes`` (the endpoints); ``page.html``, ``dashboard.js`` and ``dashboard.css`` are the page.
"""

from producers.batch_api.dashboard.board import Dashboard
from producers.batch_api.dashboard.routes import router

__all__ = ["Dashboard", "router"]
