import hypothesis
import pytest

import vjpcheck as vc

# Deterministic and without an example database, so that a test's outcome does not
# depend on what an earlier run stored.
hypothesis.settings.register_profile(
    "vjpcheck-tests", max_examples=30, database=None, derandomize=True, deadline=None
)
hypothesis.settings.load_profile("vjpcheck-tests")


@pytest.fixture
def registry():
    """A registry of its own, so that a test's rules never chain with another test's."""
    return vc.Registry()
