"""Everything that turns an intent into recall commands on RabbitMQ: the publisher library (its public
names are exported by :mod:`recalls`), the importers, ``sync``, ``reconcile``, the batch API and their
commands."""
