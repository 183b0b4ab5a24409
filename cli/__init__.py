"""The ``recalls`` command line: the one place that wires every layer's commands together."""
