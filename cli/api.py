"""``recalls api``: serve the batch API, and ``recalls api keys ...`` to manage its keys.

``--ssl-certfile`` with ``--ssl-keyfile`` serves https; the pair is loaded once before anything starts,
so a wrong file is a clear error rather than a failure inside uvicorn.  A key is printed once, when it
is created; the store keeps only its SHA-256.  An unknown key id is an exit 2, a store or broker that
is unavailable an exit 1 (:mod:`recalls.cli.errors`).

A key has scopes (``--scope batch``: its own batch checks; ``--scope ops``: the fleet-wide dashboard)
and a webhook secret of its own, which signs its batches' webhooks: ``create`` prints the key (stdout)
and the secret (stderr, beside the note; both on stdout with ``--json``), ``rotate-webhook-secret`` a
new secret, each only this once.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from recalls.cli import errors
from recalls.cli.broker import run_with_broker
from recalls.cli.errors import InputError
from recalls.cli.output import json_option, print_json
from recalls.cli.store import store_errors, with_store
from recalls.ops import dashboard
from recalls.producers.batch_api.server import Tls, serve
from recalls.shared import logs
from recalls.shared.settings import Settings
from recalls.shared.store.api_keys import SCOPES, ApiKey, ApiKeys
from recalls.shared.store.database import Database

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
    """Serve the CarsXE-shaped batch API (POST /v1/recalls-batch/submit, status, results, download).

    It also serves the operators' dashboard on /dashboard, for keys with the ops scope.
    """
    if context.invoked_subcommand is not None:
        return
    tls = _tls(ssl_certfile, ssl_keyfile)
    settings = errors.settings()
    logs.configure(settings)
    scheme = "http" if tls is None else "https"
    click.echo(f"batch API on {scheme}://{host}:{port} (OpenAPI at /openapi.json); Ctrl-C stops it", err=True)
    with contextlib.suppress(KeyboardInterrupt), store_errors(settings):  # Ctrl-C is how it is stopped
        run_with_broker(serve(settings, host, port, tls=tls, surfaces=[dashboard.surface]), settings)


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
    """Create, list and revoke the batch API's keys; rotate their webhook secrets."""


@keys.command()
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    default=("batch",),
    show_default=True,
    help="What the key may do: batch (its own batch checks), ops (the fleet-wide dashboard). Repeatable.",
)
@json_option
def create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key named NAME and print it, and its webhook secret (both shown only this once)."""
    settings = errors.settings()

    async def created(db: Database) -> tuple[ApiKey, str, str]:
        api_keys = ApiKeys(db)
        record, key = await api_keys.create(name, scopes)
        secret = await api_keys.webhook_secret(record.id)
        assert secret is not None  # drawn with the key
        return record, key, secret

    try:
        record, key, secret = _with_store(settings, created)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        print_json({**_shown(record), "key": key, "webhook_secret": secret})
        return
    scopes_shown = " ".join(record.scopes)
    click.echo(
        f"key {record.id} ({record.name}, scopes {scopes_shown}) created; keep it and its webhook secret "
        "now, neither is shown again",
        err=True,
    )
    # The key alone on stdout, as ever, so that KEY=$(recalls api keys create NAME) goes on working.
    click.echo(f"webhook secret (signs this key's batch webhooks): {secret}", err=True)
    click.echo(key)


@keys.command(name="list")
@json_option
def list_(as_json: bool) -> None:
    """List the keys (names, scopes and dates; never the keys themselves)."""
    found = _with_store(errors.settings(), lambda db: ApiKeys(db).list())
    if as_json:
        print_json([_shown(key) for key in found])
        return
    if not found:
        click.echo("no keys yet: recalls api keys create NAME")
    for key in found:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        scopes = ",".join(key.scopes)
        click.echo(f"{key.id}  {key.name}  scopes {scopes}  created {key.created_at:%Y-%m-%d %H:%M}  {state}")


@keys.command()
@click.argument("key_id")
@json_option
def revoke(key_id: str, as_json: bool) -> None:
    """Revoke the key with id KEY_ID (the part after rk_): its requests are refused from now on."""
    if not _with_store(errors.settings(), lambda db: ApiKeys(db).revoke(key_id)):
        raise _no_key(key_id)
    if as_json:
        print_json({"id": key_id, "revoked": True})
    else:
        click.echo(f"key {key_id} revoked")


@keys.command(name="rotate-webhook-secret")
@click.argument("key_id")
@json_option
def rotate_webhook_secret(key_id: str, as_json: bool) -> None:
    """Give the key KEY_ID a new webhook secret and print it (the old one stops signing at once)."""
    secret = _with_store(errors.settings(), lambda db: ApiKeys(db).rotate_webhook_secret(key_id))
    if secret is None:
        raise _no_key(key_id)
    if as_json:
        print_json({"id": key_id, "webhook_secret": secret})
        return
    click.echo(f"key {key_id}: new webhook secret; keep it now, it is not shown again:", err=True)
    click.echo(secret)


def _no_key(key_id: str) -> InputError:
    return InputError(f"key_id: no key {key_id!r} (recalls api keys list shows them)")


def _shown(key: ApiKey) -> dict[str, str | list[str] | None]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _with_store(settings: Settings, work: Callable[[Database], Awaitable[_T]]) -> _T:
    """Run ``work`` against the store, created if need be: a key is the first thing a new install writes."""
    return with_store(settings, work, opening=Database.connect)
