"""``python -m recalls``: the ``recalls`` command, for where the console script is not on PATH."""

from recalls.cli.main import main

main()
