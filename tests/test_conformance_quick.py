"""The conformance suite in the quick run (the C8 runs in test_env.py are slow), in its own file so that
pytest-xdist (`--dist loadfile`) can run it beside test_env.py."""

from ecomjax import oracle
from ecomjax.tasks.goal import TASK
from ecomjax.testing.conformance import check_env


def test_conformance_one_task_quick(status_env):
    """jit == no-jit, vmap == loop, no retracing, stable pytrees and determinism on the STATUS env."""
    env, params = status_env
    check_env(env, params, (TASK["STATUS"],), oracle.act, difficulties=(5,))
