"""``recalls schemas``: write, or check, the JSON Schemas of the contract and the AsyncAPI document."""

from __future__ import annotations

from pathlib import Path

import click

from recalls.cli import errors
from recalls.cli.output import json_option, print_json
from recalls.shared.asyncapi import ASYNCAPI_PATH, stale_asyncapi, write_asyncapi
from recalls.shared.schema_export import SCHEMA_DIR, stale_schemas, write_schemas


@click.command()
@click.option("--check", is_flag=True, help="Change nothing; exit 3 listing files that differ from the code.")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMA_DIR,
    show_default="shared/schemas",
    help="Where the schema files live.",
)
@click.option(
    "--asyncapi",
    type=click.Path(dir_okay=False, path_type=Path),
    default=ASYNCAPI_PATH,
    show_default="shared/asyncapi.json",
    help="Where the AsyncAPI document lives.",
)
@json_option
def schemas(check: bool, directory: Path, asyncapi: Path, as_json: bool) -> None:
    """Write the JSON Schema of every command and of the outcome event, and the AsyncAPI document."""
    where = f"{directory} and {asyncapi}"
    if check:
        stale = stale_schemas(directory) + ([asyncapi.name] if stale_asyncapi(asyncapi) else [])
        if as_json:
            print_json({"stale": stale})
        elif stale:
            click.echo(
                f"error: schemas out of date in {where}: {', '.join(stale)} (run: recalls schemas)", err=True
            )
        else:
            click.echo(f"schemas in {where} are up to date")
        raise SystemExit(errors.FINDINGS if stale else errors.OK)
    changed = write_schemas(directory) + ([asyncapi.name] if write_asyncapi(asyncapi) else [])
    if as_json:
        print_json({"written": changed})
    else:
        click.echo(f"wrote {', '.join(changed)}" if changed else f"schemas in {where} are up to date")
