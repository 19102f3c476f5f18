"""Record the oracle's whole episodes of every task (C8 env, 2,000-product catalog, seed 0) at d in {0, 10, 20},
32 per (task, d): goals, final worlds (the seen-id table as a digest) and outcomes, for tests/test_verifier_guard.py.

guard_oracle_episodes.npz was recorded with the vmapped single-env core of commit b5d734e (before the batched
core): `PYTHONPATH=<checkout of b5d734e> python tests/data/record_guard_fixture.py OUT.npz`. The fields match
`ecomjax.testing.guard.fixture_arrays`, which did not exist then."""
import hashlib, os, sys
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax, jax.numpy as jnp, numpy as np
import ecomjax
from ecomjax import oracle
from ecomjax.catalog import synthetic
from ecomjax.testing.rollout import run_batch

SEED, PER, DIFFICULTIES, NUM_TASKS = 20261204, 32, (0, 10, 20), 8
catalog, _ = synthetic(2000, seed=0)
env, params = ecomjax.make("C8", catalog=catalog)
tasks = np.repeat(np.arange(NUM_TASKS), len(DIFFICULTIES) * PER)
ds = np.tile(np.repeat(np.asarray(DIFFICULTIES), PER), NUM_TASKS)
keys = jax.random.split(jax.random.key(SEED), len(tasks))
final, ts = jax.jit(lambda k, d, t: run_batch(env, oracle.act, k, params, d, t))(keys, jnp.asarray(ds), jnp.asarray(tasks))
out = {"task": tasks, "d": ds}
for prefix, tree in (("goal", final.goal), ("world", final.world)):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = prefix + jax.tree_util.keystr(path)
        leaf = np.asarray(leaf)
        if name == "world.seen":
            out["world.seen_sha256"] = np.stack([np.frombuffer(hashlib.sha256(np.sort(r).tobytes()).digest(), np.uint8) for r in leaf])
        else:
            out[name] = leaf
for k in ("num_intents", "turn", "termination"):
    out["state." + k] = np.asarray(getattr(final, k))
out["reward"] = np.asarray(ts.reward)
for k in ("is_correct", "r_task", "r_eff", "r_hall", "intent_correct"):
    out["info." + k] = np.asarray(ts.info[k])
np.savez_compressed(sys.argv[1], **out)
print("saved", sys.argv[1], len(out), "arrays; oracle correct", out["info.is_correct"].mean())
