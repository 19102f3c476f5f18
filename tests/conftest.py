"""Test session setup: CPU JAX with 8 simulated devices, no network, fixed seeds, and one JAX compilation
cache per test run (shared by pytest-xdist workers, removed at the end) so identical programs built by
different fixtures compile once."""

import os
import shutil
import tempfile
from pathlib import Path

# Unoptimised LLVM code generation: compiling is most of a test's time, and the tests' arrays are tiny.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

COMPILE_CACHE = Path(tempfile.gettempdir()) / (
    f"ecomjax-test-jax-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}")
jax.config.update("jax_compilation_cache_dir", str(COMPILE_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):           # the controller (or a run without xdist)
        shutil.rmtree(COMPILE_CACHE, ignore_errors=True)


settings.register_profile("ecomjax", deadline=None, max_examples=30, derandomize=True)
settings.load_profile("ecomjax")


@pytest.fixture(autouse=True)
def _fixed_numpy_seed():
    np.random.seed(0)


@pytest.fixture(scope="session")
def cpu_devices():
    devices = jax.devices("cpu")
    assert len(devices) == 8, "tests expect 8 simulated CPU devices"
    return devices


@pytest.fixture(scope="session")
def small_catalog():
    """A 2,000-product synthetic catalog shared by the whole session."""
    from ecomjax.catalog import synthetic

    return synthetic(2000, seed=0)


@pytest.fixture(scope="session")
def status_env(small_catalog):
    """(env, params) of the STATUS task on the shared catalog: TextEnvs built from these params share
    their compiled functions across test files."""
    import ecomjax

    return ecomjax.make("STATUS", catalog=small_catalog[0])


JOURNEY_RESETS_PER_D = 12


@pytest.fixture(scope="session")
def journey_resets(small_catalog):
    """JOURNEY episodes freshly reset on the shared catalog, JOURNEY_RESETS_PER_D per difficulty 0..20:
    {goals [B, I], world [B], d [B], num_intents [B], order_intents [B] (its RETURN and STATUS intents, the
    ones that add orders)} as numpy, for checking the generated worlds."""
    import ecomjax
    from ecomjax.tasks.goal import TASK

    env, params = ecomjax.make("JOURNEY", catalog=small_catalog[0])
    d = np.repeat(np.arange(21), JOURNEY_RESETS_PER_D)
    keys = jax.random.split(jax.random.key(0x70E7), len(d))
    states, _ = jax.jit(jax.vmap(lambda k, dd: env.reset(k, params, dd)))(keys, jnp.asarray(d, jnp.int32))
    goals, world, num_intents = jax.device_get((states.goal, states.world, states.num_intents))
    order_intents = np.isin(goals.task, [TASK["RETURN"], TASK["STATUS"]]).sum(axis=1)
    return {"goals": goals, "world": world, "d": d, "num_intents": num_intents, "order_intents": order_intents}
