"""DVSA's four API operations.  Each has its own rate limit, so the sandbox counts everything per verb."""

from __future__ import annotations

import enum


class Verb(enum.StrEnum):
    """An operation, named after what it does rather than its HTTP method."""

    CREATE = "create"  # POST /recalls
    FIX = "fix"  # PUT /recalls/vin/{vin}
    DELETE = "delete"  # DELETE /recalls/vin/{vin}
    GET = "get"  # GET /recalls/vin/{vin}
