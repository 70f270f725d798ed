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
