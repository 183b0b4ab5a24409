"""The store's migrations only add, so a version's workers keep running on a store migrated for a later
one: ``recalls migrate`` before a rollout, never after (docs/operations.md, "Schema migrations")."""

from __future__ import annotations

import re

from recalls.shared.store.migrations import MIGRATIONS

ADDING = re.compile(r"\s*(CREATE TABLE|CREATE (UNIQUE )?INDEX|ALTER TABLE \w+ ADD COLUMN)\b", re.IGNORECASE)


def test_every_migration_statement_adds_a_table_an_index_or_a_column() -> None:
    removing = [(m.version, s) for m in MIGRATIONS for s in m.statements if not ADDING.match(s)]
    assert removing == []


def test_versions_are_unique_and_increasing() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions))
