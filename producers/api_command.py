"""``recalls api``: serve the batch API, and ``recalls api keys create|list|revoke`` to manage its keys.

``--ssl-certfile`` with ``--ssl-keyfile`` serves https; the pair is loaded once before anything starts,
so a wrong file is a clear error rather than a failure inside uvicorn.  A key is printed once, when it
is created; the store keeps only its SHA-256.  Failures print one ``error: ...`` line: exit 2 for
input the user must correct, 1 for a store or broker that is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from producers.batch_api.server import Tls, serve
from producers.command import InputError, ServiceError, cli_settings, run_with_broker
from shared import logs
from shared.settings import Settings
from shared.store.api_keys import ApiKey, ApiKeys
from shared.store.database import Database, StoreError

_T = TypeVar("_T")


_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--ssl-certfile", type=_PEM, help="PEM certificate chain: serve https (with --ssl-keyfile).")
@click.option("--ssl-keyfile", type=_PEM, help="PEM private key of --ssl-certfile, unencrypted.")
@click.pass_context
def api(
    context: click.Context, host: str, port: int, ssl_certfile: Path | None, ssl_keyfile: Path | None
) -> None:
    """Serve the CarsXE-shaped batch API (POST /v1/recalls-batch/submit, status, results, download)."""
    if context.invoked_subcommand is not None:
        return
    tls = _tls(ssl_certfile, ssl_keyfile)
    settings = cli_settings()
    logs.configure(settings)
    scheme = "http" if tls is None else "https"
    click.echo(f"batch API on {scheme}://{host}:{port} (OpenAPI at /openapi.json); Ctrl-C stops it", err=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is stopped
        run_with_broker(serve(settings, host, port, tls=tls), settings)


def _tls(certfile: Path | None, keyfile: Path | None) -> Tls | None:
    """The pair to serve https with (``None``: neither given); an :class:`InputError` for half a pair."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise InputError("--ssl-certfile: required with --ssl-keyfile (the certificate of that key)")
    if keyfile is None:
        raise InputError("--ssl-keyfile: required with --ssl-certfile (that certificate's private key)")
    try:
        # A password callback, so that an encrypted key fails here instead of prompting on the terminal.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            certfile, keyfile, password=lambda: b""
        )
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise InputError(
            f"--ssl-certfile, --ssl-keyfile: not a PEM certificate and its unencrypted private key ({reason})"
        ) from None
    return Tls(certfile, keyfile)


@api.group()
def keys() -> None:
    """Create, list and revoke the batch API's keys."""


@keys.command()
@click.argument("name")
def create(name: str) -> None:
    """Create a key named NAME and print it (it is shown only this once)."""
    settings = cli_settings()
    try:
        record, key = _with_store(settings, lambda db: ApiKeys(db).create(name))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    click.echo(f"key {record.id} ({record.name}) created; keep it now, it is not shown again:", err=True)
    click.echo(key)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def list_(as_json: bool) -> None:
    """List the keys (names and dates; never the keys themselves)."""
    found = _with_store(cli_settings(), lambda db: ApiKeys(db).list())
    if as_json:
        click.echo(json.dumps([_shown(key) for key in found], indent=2))
        return
    if not found:
        click.echo("no keys yet: recalls api keys create NAME")
    for key in found:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(f"{key.id}  {key.name}  created {key.created_at:%Y-%m-%d %H:%M}  {state}")


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke the key with id KEY_ID (the part after rk_): its requests are refused from now on."""
    if not _with_store(cli_settings(), lambda db: ApiKeys(db).revoke(key_id)):
        raise InputError(f"key_id: no key {key_id!r} (recalls api keys list shows them)")
    click.echo(f"key {key_id} revoked")


def _shown(key: ApiKey) -> dict[str, str | None]:
    return {
        "id": key.id,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _with_store(settings: Settings, work: Callable[[Database], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        async with Database.connect(settings) as db:
            return await work(db)

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise InputError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        # The driver's message may quote connection details; the kind of failure is enough.
        raise ServiceError(f"the store is unavailable ({type(exc).__name__})") from None
