"""The batch API: CarsXE-shaped bulk recall checks over the fleet (FastAPI).

Entry points: :func:`create_app` (the ASGI app over an open store and a connected publisher) and
:func:`serve` (opens both and runs the app with uvicorn until cancelled).  Modules: ``app``,
``routes`` (the endpoints), ``auth`` (API keys), ``submit`` (a submit's inputs), ``jobs`` (batches
started, published and purged), ``views`` (the JSON and CSV shapes), ``errors`` (the one error shape),
``server``.
"""

from recalls.shared.extras import require

require("The batch API", ("api",), "fastapi", "httpx", "prometheus_client", "sqlalchemy", "uvicorn")

# After the check, so that a missing package is named with its extra.
from recalls.producers.batch_api.app import create_app  # noqa: E402
from recalls.producers.batch_api.server import serve  # noqa: E402

__all__ = ["create_app", "serve"]
