"""Checkpoints with an orbax `CheckpointManager` (async saves): policy parameters, optimiser state and, as
JSON, the step, curriculum and configs. A run restored from step k continues as the uninterrupted run.

Layout: `DIR/<step>/state` (arrays: `{"params", "opt"}`) and `DIR/<step>/meta` (JSON). A directory written
by a run with another model config is refused with a message naming the differing fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from ecomjax.models.qwen3 import Qwen3, Qwen3Config
from ecomjax.rl.trainer import Trainer

KEEP = 3


def manager(directory: str | Path, keep: int = KEEP, async_save: bool = True) -> ocp.CheckpointManager:
    """A manager private to this process (every process holds a full copy of the trainer's state: in a
    multi-process run process 0 saves and every process can restore)."""
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    solo = {}
    if jax.process_count() > 1:
        solo["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()})
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=False,
                                           **solo)
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


def _arrays(trainer: Trainer) -> dict[str, Any]:
    """The arrays a checkpoint holds. In a multi-process run they are host NumPy copies: each process's
    replicated state lives on its own devices, which orbax cannot write as global arrays."""
    tree = {"params": nnx.to_pure_dict(nnx.state(trainer.model, nnx.Param)),
            "opt": nnx.to_pure_dict(nnx.state(trainer.optimizer, nnx.optimizer.OptState))}
    return jax.device_get(tree) if jax.process_count() > 1 else tree


def save(mgr: ocp.CheckpointManager, trainer: Trainer, extra: dict | None = None) -> None:
    """Save the trainer at its current step (async: returns before the write finishes)."""
    meta = {**trainer.state_dict(), **(extra or {})}
    mgr.save(trainer.step_index, args=ocp.args.Composite(state=ocp.args.StandardSave(_arrays(trainer)),
                                                         meta=ocp.args.JsonSave(meta)))


def read_meta(mgr: ocp.CheckpointManager, step: int | None = None) -> dict | None:
    step = mgr.latest_step() if step is None else step
    if step is None:
        return None
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def restore(mgr: ocp.CheckpointManager, trainer: Trainer, step: int | None = None) -> dict | None:
    """Load the latest (or given) checkpoint into `trainer`; returns its metadata, or None if there is none."""
    meta = read_meta(mgr, step)
    if meta is None:
        return None
    mine, theirs = json.loads(json.dumps(trainer.state_dict()["model_config"])), meta["model_config"]
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise ValueError(f"checkpoint {mgr.directory} was written for another model config: "
                         + ", ".join(f"{k}={theirs.get(k)!r} (this run: {mine.get(k)!r})" for k in diff))
    target = _arrays(trainer)
    state = mgr.restore(meta["step"], args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    state = jax.tree.map(jnp.asarray, state)
    params = nnx.state(trainer.model, nnx.Param)
    nnx.replace_by_pure_dict(params, state["params"])
    nnx.update(trainer.model, params)
    opt = nnx.state(trainer.optimizer, nnx.optimizer.OptState)
    nnx.replace_by_pure_dict(opt, state["opt"])
    nnx.update(trainer.optimizer, opt)
    trainer.load_state_dict(meta)
    return meta


def find_manager(path: str | Path) -> ocp.CheckpointManager:
    """The checkpoint manager of a run directory (`OUT` or `OUT/checkpoints`); one clear error otherwise."""
    path = Path(path)
    for directory in (path / "checkpoints", path):
        if directory.is_dir():
            mgr = manager(directory, async_save=False)
            if mgr.latest_step() is not None:
                return mgr
    raise FileNotFoundError(f"no ecomjax checkpoint in {str(path)!r} (expected OUT/checkpoints/<step>/ from "
                            "python -m ecomjax.train)")


def load_policy(path: str | Path, step: int | None = None) -> tuple[Qwen3, dict]:
    """The policy model saved in a run directory, and the checkpoint's metadata."""
    mgr = find_manager(path)
    meta = read_meta(mgr, step)
    cfg = dict(meta["model_config"])
    if isinstance(cfg.get("eos_token_id"), list):
        cfg["eos_token_id"] = tuple(cfg["eos_token_id"])
    model = Qwen3(Qwen3Config(**cfg), rngs=nnx.Rngs(0))
    raw = mgr.restore(meta["step"], args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    params = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(params, raw["params"])
    nnx.update(model, params)
    return model, meta
