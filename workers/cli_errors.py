"""What the workers' CLI commands share: settings or a one-line error, and the exit that prints it.

Exit 2 for input or settings the user must correct, 1 for a service that is unavailable or a thing not
found; the line never holds a secret.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from recalls.shared.settings import Settings, SettingsError, load_settings


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)
