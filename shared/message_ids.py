"""Message ids derived from content: the same command, however often or by whom it is built, has one id.

That is what makes a re-run of an import, a repeated snapshot row or a re-submitted check publish nothing
twice: the journal and DVSA's idempotency both key on the id.
"""

from __future__ import annotations

import hashlib


def content_id(content: str) -> str:
    """A UUID-shaped digest of ``content`` (a hash, a few times faster than ``uuid.uuid5``)."""
    h = hashlib.blake2b(content.encode(), digest_size=16, person=b"recalls-fleet").hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
