"""Set-up for every test: the helpers' asserts in tests/support explain their failures, as a test's do."""

import pytest

pytest.register_assert_rewrite("tests.support")
