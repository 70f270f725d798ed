import os

import pytest

# Two cores on CI: keep torch from oversubscribing when tests run in parallel workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def mnist5k():
    from effai import data

    return data.load("mnist5k", seed=0)


@pytest.fixture(scope="session")
def digits():
    from effai import data

    return data.load("digits", seed=0)


@pytest.fixture(autouse=True)
def _restore_zoo_registry():
    """Guides and examples register their own models (as users do); keep that out of other tests."""
    from effai.zoo import registry

    builders, infos = dict(registry._BUILDERS), dict(registry._INFOS)
    yield
    registry._BUILDERS.clear()
    registry._BUILDERS.update(builders)
    registry._INFOS.clear()
    registry._INFOS.update(infos)
