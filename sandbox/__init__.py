"""The DVSA sandbox: a stateful stand-in for DVSA's Vehicle Recalls API, for tests, demos and benchmarks.

It keeps recalls in memory, issues OAuth tokens like Azure AD, enforces DVSA's per-verb rate limit in its
strictest reading, and can inject faults (errors, latency, hangs, dropped connections, 429 storms, token
outages) on demand.  Its rules are its own: it shares no DVSA logic with the fleet, so it can disagree with
the fleet's client and catch its mistakes.

Start it with :func:`recalls.sandbox.server.running_sandbox` (in-process) or ``recalls simulator`` (CLI).
"""

from recalls.shared.extras import require

require("The DVSA sandbox", ("sandbox",), "aiohttp")
