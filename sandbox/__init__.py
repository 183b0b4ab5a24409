"""The DVSA sandbox: a stateful stand-in for DVSA's Vehicle Recalls API, for tests, demos and benchmarks.

It keeps recalls in memory, issues OAuth tokens like Azure AD, enforces DVSA's per-verb rate limit in its
strictest reading, and can inject faults (errors, latency, hangs, dropped connections, 429 storms, token
outages) on demand.  Its rules are its own: it shares no DVSA logic with the fleet, so it can disagree with
the fleet's client and catch its mistakes.

Start it with :func:`recalls.sandbox.server.running_sandbox` (in-process) or ``recalls simulator`` (CLI).
"""

from importlib.util import find_spec

# Its one package comes with the sandbox extra.  The check is the sandbox's own, rather than
# recalls.shared.extras, since the sandbox takes nothing from the fleet but its settings (D3).
if find_spec("aiohttp") is None:
    raise ModuleNotFoundError(
        "The DVSA sandbox needs aiohttp, which the base install of recalls-fleet leaves out: "
        "pip install 'recalls-fleet[sandbox]'",
        name="aiohttp",
    )
