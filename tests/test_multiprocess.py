"""Two CPU processes on localhost (gloo collectives) train two steps and end with the parameters of the
same run in one process."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from ecomjax.rl.checkpoint import load_policy
from ecomjax.rl.runlog import read_metrics

FLAGS = ["--tasks", "STATUS", "--num-envs", "8", "--group-size", "4", "--hidden-size", "16", "--max-new-tokens", "12",
         "--max-seq-len", "1536", "--tool-result-tokens", "48", "--warm-start-steps", "40", "--warm-start-episodes", "8",
         "--warm-start-lr", "1e-2", "--num-products", "2000",
         "--steps", "2", "--checkpoint-every", "2", "--heldout-episodes", "0", "--no-tensorboard", "--no-dynamic-sampling", "--mesh", "none",
         "--temperature", "1.0", "--micro-batch", "2", "--overlong-tokens", "8", "--overlong-cache", "6"]
# An untrained model's turns are all format errors of the same length (reward -1 everywhere, no gradient); a
# short warm start makes turn lengths vary, and the overlong punishment in tokens then makes rewards differ
# within groups, so the two steps really move the parameters.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env


def _params(out):
    model, meta = load_policy(out)
    return meta, jax.tree.leaves(jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param))))


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    run = [sys.executable, "-m", "ecomjax.train", *FLAGS]
    port = _free_port()
    workers = [subprocess.Popen(run + ["--out", str(multi), "--coordinator", f"127.0.0.1:{port}",
                                       "--num-processes", "2", "--process-id", str(i)], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    ref = subprocess.run(run + ["--out", str(single)], env=_env(), capture_output=True, text=True, timeout=1500)
    outs = [w.communicate(timeout=1500)[0] for w in workers]
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    for w, out in zip(workers, outs):
        assert w.returncode == 0, out[-3000:]
    meta_1, p1 = _params(single)
    meta_2, p2 = _params(multi)
    assert meta_1["step"] == meta_2["step"] == 2 and meta_1["curriculum"] == meta_2["curriculum"]
    rows = read_metrics(single / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1] and any(r["grad_norm"] > 0 for r in rows)   # a real RL update
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_importing_the_trainer_leaves_the_backend_uninitialised():
    """`jax.distributed.initialize` must run before any JAX computation, so no module computes at import."""
    code = ("from jax._src import xla_bridge as xb\n"
            "import ecomjax, ecomjax.train, ecomjax.evaluate, ecomjax.rl.trainer, ecomjax.rl.checkpoint\n"
            "assert not xb.backends_are_initialized(), 'a module initialised the XLA backend at import'\n")
    result = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
