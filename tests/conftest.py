import hypothesis
import jax
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


@pytest.fixture
def forget_new_rules():
    """Remove the rules that the test added to the default registry, such as those of a
    module that a command imported."""
    before = list(vc.default_registry)
    yield
    for rule in list(vc.default_registry):
        if not any(rule is b for b in before):
            vc.default_registry.remove(rule)


def pytest_sessionfinish(session):
    """Free JAX's compilation and tracing caches before the session ends.

    In a pytest-xdist worker, pytest 9.2 collects garbage twice after the worker has
    reported that it finished, and execnet 2.1 sends the worker SIGINT if it still runs
    5 s after the controller asked it to exit. The KeyboardInterrupt then lands in a gc
    callback such as Hypothesis's and shows as a PytestUnraisableExceptionWarning.
    With the caches (1.5 to 1.8 million objects per worker) the two passes took 1.8 s on
    a 2-core machine at load 3, so heavier load can exceed 5 s. Without them they took
    0.2 to 0.3 s.
    """
    jax.clear_caches()
