"""What a producer checks on the broker before it publishes: that the fleet's exchanges are there.

Connecting is :func:`recalls.shared.amqp.connect`, the one way every part of the fleet reaches RabbitMQ.
"""

from __future__ import annotations

from aio_pika.abc import AbstractConnection

from recalls.shared.topology import Topology, TopologyError, missing_exchanges


async def require_exchange(connection: AbstractConnection, topology: Topology, exchange: str) -> None:
    """Check passively (no permission needed) that ``exchange`` exists; raise :class:`TopologyError` if not.

    For producers that declare nothing: publishing to or binding to a missing exchange would close the
    channel with a less helpful error.
    """
    if await missing_exchanges(connection, [exchange]):
        raise TopologyError(
            f"RabbitMQ holds no exchange {exchange!r}: check the prefix ({topology.prefix!r}), or have "
            f"`recalls topology` run once with RECALLS_PREFIX={topology.prefix} as a broker user that may "
            "configure (or connect with declare=True as one)"
        )
