"""The fault-and-load suite: numbers showing that the fleet keeps its promises under real faults.

Each scenario (see :mod:`bench.faults.scenarios`) runs the real fleet (worker processes, RabbitMQ, Redis,
the store and a DVSA sandbox process) through :mod:`bench.faults.harness`, injects its faults, and ends by
comparing the sandbox's state with the expected one, record by record (:mod:`bench.faults.workload`).
Its figures (:mod:`bench.faults.figures`) say how many commands went in, were applied, lost, applied
twice, throttled, dead-lettered, and how soon the fleet recovered after each fault.

    .venv/bin/python -m bench.faults [--long] [--only crash,broker] [--out PATH]

writes ``bench/results/faults-short.json`` (or ``faults-long.json``) and the README's Faults table.
The short mode runs in CI through ``tests/integration/test_fault_suite.py``.
"""
