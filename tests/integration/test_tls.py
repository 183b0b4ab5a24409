"""The fleet over TLS: amqps://, rediss:// and PostgreSQL's sslmode, each through a real handshake.

The machine's services speak plain TCP, so each is reached through a TLS proxy on loopback whose
certificate is a throwaway self-signed one (tests/support/certificates.py); the fleet trusts it the
way an operator would, in the URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bench.faults.harness import fresh_database
from recalls.shared.settings import Settings, load_settings
from recalls.shared.store.database import Database, StoreError
from recalls.shared.store.ledger import Ledger
from tests.integration.conftest import Events, publish, running_worker
from tests.support.certificates import Certificate, self_signed
from tests.support.commands import create, vin
from tests.support.tls import tls_proxy

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return self_signed(tmp_path, "localhost", "127.0.0.1")


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database's name, migrated, and dropped afterwards."""
    async with fresh_database("tls") as url:
        database = make_url(url).database
        assert database is not None
        yield database


async def test_a_worker_uses_broker_redis_and_store_over_tls(
    certificate: Certificate, database: str, settings: Settings, channel: AbstractChannel, events: Events
) -> None:
    ca = certificate.certfile
    async with (
        tls_proxy(certificate, 5672) as broker,
        tls_proxy(certificate, 6379) as redis,
        tls_proxy(certificate, 5432, postgres=True) as store,
    ):
        over_tls = settings.model_copy(
            update={
                "amqp_url": SecretStr(f"amqps://guest:guest@localhost:{broker.port}/?cafile={ca}"),
                "redis_url": SecretStr(f"rediss://localhost:{redis.port}/0?ssl_ca_certs={ca}"),
                "database_url": SecretStr(
                    f"postgresql://postgres@localhost:{store.port}/{database}"
                    f"?sslmode=verify-full&sslrootcert={ca}"
                ),
            }
        )
        command = create(3101)
        async with running_worker(over_tls):
            await publish(channel, settings, command)
            [event] = await events.wait_for(1)
        assert event.result == "applied"
        async with Database.connect(over_tls) as db:
            [entry] = await Ledger(db).for_vin(vin(3101))
        assert entry.state == "open"
    assert (broker.sessions > 0, redis.sessions > 0, store.sessions > 0) == (True, True, True)


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
async def test_a_store_url_in_libpq_form_with_sslmode_is_accepted(
    certificate: Certificate, database: str, mode: str
) -> None:
    async with tls_proxy(certificate, 5432, postgres=True) as store:
        root = f"&sslrootcert={certificate.certfile}" if mode == "verify-ca" else ""
        url = f"postgresql://postgres@127.0.0.1:{store.port}/{database}?sslmode={mode}{root}"
        async with Database.connect(load_settings(database_url=url)) as db:
            await db.ping()
    assert store.sessions > 0


async def test_a_store_whose_certificate_is_not_trusted_is_not_used(
    certificate: Certificate, database: str, tmp_path: Path
) -> None:
    stranger = self_signed(tmp_path, "localhost", "127.0.0.1")
    async with tls_proxy(stranger, 5432, postgres=True) as store:
        url = (
            f"postgresql://postgres@localhost:{store.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={certificate.certfile}"
        )
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            async with Database.connect(load_settings(database_url=url)):
                pass


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("sslmode=required", "sslmode: must be one of disable, allow, prefer, require, verify-ca"),
        ("sslrootcert=/tmp/ca.pem", "sslmode: must be set with sslrootcert, sslcert or sslkey"),
        ("sslmode=require&sslrootcert=/tmp/ca.pem", "sslrootcert: needs sslmode=verify-ca or verify-full"),
        ("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "sslrootcert: not a readable PEM file"),
    ],
)
async def test_a_bad_tls_parameter_is_refused_by_name_without_the_password(query: str, reason: str) -> None:
    url = f"postgresql://app:s3cret-pw@127.0.0.1:5432/recalls?{query}"
    with pytest.raises(StoreError) as refused:
        await Database.open(load_settings(database_url=url))
    assert str(refused.value).startswith(f"RECALLS_DATABASE_URL: {reason}")
    assert "s3cret-pw" not in str(refused.value)
