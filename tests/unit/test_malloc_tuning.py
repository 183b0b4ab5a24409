"""The worker's mmap threshold: glibc accepts it here (Linux with glibc, as CI and the images run)."""

from __future__ import annotations

import platform

import pytest

from recalls.shared.malloc_tuning import pin_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc has the threshold to pin")
def test_glibc_takes_the_fixed_threshold() -> None:
    assert pin_mmap_threshold() is True
