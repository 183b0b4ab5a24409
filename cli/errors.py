"""The CLI's one error model, and the exit codes every command keeps.

A failure is one ``error: ...`` line on stderr that says what went wrong and which setting, flag or
field to change: no traceback, no secret.  The codes (docs/operations.md, "Exit codes"):

* 0: done;
* 1: a service (RabbitMQ, the store, DVSA) failed or refused; the same command may work later;
* 2: bad input or usage: a flag, a file or a ``RECALLS_*`` setting to correct;
* 3: done, with findings to look at: rows rejected, drift found, dead letters left where they were;
* 130: stopped by Ctrl-C part way; the same command run again goes on.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from recalls.shared.settings import Settings

OK = 0
FAILED = 1
BAD_INPUT = 2
FINDINGS = 3
STOPPED = 130  # as a shell reports a command stopped by Ctrl-C


class CliError(click.ClickException):
    """A failure explained in one ``error: ...`` line on stderr."""

    exit_code = FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class InputError(CliError):
    """The user must change a flag, a file or a setting."""

    exit_code = BAD_INPUT


class ServiceError(CliError):
    """A service is unreachable or refused; the same command may work later."""

    exit_code = FAILED


def settings(**overrides: Any) -> Settings:
    """The fleet's settings, or an :class:`InputError` naming each ``RECALLS_*`` variable at fault."""
    # Imported here: pydantic would double the start-up of `recalls --help`, which needs no settings.
    from recalls.shared.settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise InputError(exc.format_message()) from None
