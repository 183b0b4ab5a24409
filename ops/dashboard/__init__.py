"""The live dashboard of ``recalls api``: one page an operator leaves open.

It shows the fleet's DVSA calls per second per verb against the rate limit, throttling, queue depths,
retries, dead letters, the token, the workers, and the caller's batch checks, refreshed every second.
Modules: ``window`` (the stats of the last minutes, added up per second), ``feed`` (reading them and
the queue depths from RabbitMQ), ``board`` (the snapshot), ``routes`` (the endpoints), ``surface``
(what the batch API's app serves and starts of it), ``sign_in``
(a key in once, a session cookie after), ``assets`` (the files below); ``page.html``,
``dashboard.js`` and ``dashboard.css`` are the page, ``sign-in.html`` and ``sign-in.js`` its door.
"""

from recalls.ops.dashboard.board import Dashboard
from recalls.ops.dashboard.routes import router
from recalls.ops.dashboard.surface import DashboardSurface, surface

__all__ = ["Dashboard", "DashboardSurface", "router", "surface"]
