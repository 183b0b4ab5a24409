"""The one error for a role imported without its extra.

The base install of recalls-fleet is the publisher (docs/design.md, decision 40); the worker, the batch
API and the store need packages that only an extra brings (the sandbox too, and checks for its own).  Each
of those packages checks for them as it is imported, so a missing one is named beside the install command
that brings it, rather than surfacing as a bare ``ModuleNotFoundError`` from deep in an import chain.
"""

from __future__ import annotations

from importlib.util import find_spec

DISTRIBUTION = "recalls-fleet"


class MissingExtra(ModuleNotFoundError):
    """A role of the fleet was imported without the extra that installs its packages.

    A ``ModuleNotFoundError`` whose ``name`` is the first missing module, as Python's own would be, so
    code that handles a missing package (the CLI, D41) handles this one too.
    """


def require(role: str, extras: tuple[str, ...], *modules: str) -> None:
    """Raise :class:`MissingExtra` naming ``extras`` unless each top-level module of ``modules`` is found.

    Only looks (``find_spec``), importing nothing, so the check costs no import time.
    """
    missing = [module for module in modules if find_spec(module) is None]
    if missing:
        installs = " or ".join(f"pip install '{DISTRIBUTION}[{extra}]'" for extra in extras)
        needs = ", ".join(missing)
        raise MissingExtra(
            f"{role} needs {needs}, which the base install of {DISTRIBUTION} leaves out: {installs}",
            name=missing[0],
        )
