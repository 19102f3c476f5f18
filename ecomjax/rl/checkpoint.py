"""Checkpoints with an orbax `CheckpointManager` (async saves): policy parameters, optimiser state, the
tokenizer and, as JSON, the step, curriculum and configs. A run restored from step k continues as the
uninterrupted run.

Layout (format `CHECKPOINT_FORMAT`): `DIR/<step>/state` (arrays: `{"params", "opt"}`), `DIR/<step>/meta`
(JSON, with `format_version`, the tokenizer's name and `tokenizer_sha256`) and `DIR/<step>/tokenizer` (the
tokenizer's `save_pretrained` files: `AutoTokenizer.from_pretrained` reads the directory). A directory
written by a run with another model config or another tokenizer is refused with a message naming both.
Checkpoints of format 1 (before the tokenizer was saved) name their tokenizer only; one that names the
built-in tokenizer loads with today's frozen built-in tokenizer and a warning."""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from ecomjax.models.qwen3 import Qwen3, Qwen3Config
from ecomjax.rl.trainer import Trainer
from ecomjax.text.tokenizer import BUILTIN_TOKENIZER, builtin_tokenizer, load_tokenizer, tokenizer_sha256

KEEP = 3
CHECKPOINT_FORMAT = 2               # 1: no tokenizer item and no format_version in meta
TOKENIZER_ITEM = "tokenizer"


class TokenizerFilesHandler(ocp.CheckpointHandler):
    """Saves a tokenizer's files (name -> bytes) as the files of its item directory, and reads them back."""

    def save(self, directory: epath.Path, args: TokenizerFilesSave) -> None:
        for name, data in args.files.items():
            (directory / name).write_bytes(data)

    def restore(self, directory: epath.Path, args: TokenizerFilesRestore | None = None) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@ocp.args.register_with_handler(TokenizerFilesHandler, for_save=True)
@dataclasses.dataclass
class TokenizerFilesSave(ocp.args.CheckpointArgs):
    """The tokenizer item to save: its files by name."""

    files: dict[str, bytes]


@ocp.args.register_with_handler(TokenizerFilesHandler, for_restore=True)
@dataclasses.dataclass
class TokenizerFilesRestore(ocp.args.CheckpointArgs):
    """Read the tokenizer item back (its files by name)."""


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
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta", TOKENIZER_ITEM))


def _arrays(trainer: Trainer) -> dict[str, Any]:
    """The arrays a checkpoint holds. In a multi-process run they are host NumPy copies: each process's
    replicated state lives on its own devices, which orbax cannot write as global arrays."""
    tree = {"params": nnx.to_pure_dict(nnx.state(trainer.model, nnx.Param)),
            "opt": nnx.to_pure_dict(nnx.state(trainer.optimizer, nnx.optimizer.OptState))}
    return jax.device_get(tree) if jax.process_count() > 1 else tree


@functools.lru_cache(maxsize=2)
def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files `save_pretrained` writes for `tokenizer`, by name (cached: a run saves one tokenizer)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def save(mgr: ocp.CheckpointManager, trainer: Trainer, extra: dict | None = None) -> None:
    """Save the trainer and its tokenizer at the current step (async: returns before the write finishes)."""
    tokenizer = trainer.tenv.tokenizer
    meta = {**trainer.state_dict(), "format_version": CHECKPOINT_FORMAT, "tokenizer": tokenizer.name_or_path,
            "tokenizer_sha256": tokenizer_sha256(tokenizer), **(extra or {})}
    items = {"state": ocp.args.StandardSave(_arrays(trainer)), "meta": ocp.args.JsonSave(meta),
             TOKENIZER_ITEM: TokenizerFilesSave(tokenizer_files(tokenizer))}
    mgr.save(trainer.step_index, args=ocp.args.Composite(**items))


def read_meta(mgr: ocp.CheckpointManager, step: int | None = None) -> dict | None:
    """The metadata of the latest (or given) checkpoint; None if there is none. A checkpoint of a format
    newer than this ecomjax reads is refused."""
    step = mgr.latest_step() if step is None else step
    if step is None:
        return None
    meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    version = meta.get("format_version", 1)
    if version > CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {mgr.directory}/{step} has format {version}; this ecomjax reads formats up to "
                         f"{CHECKPOINT_FORMAT} (upgrade ecomjax)")
    return meta


_OLD_BUILTIN_RISK = ("was written before checkpoints saved their tokenizer and records only the built-in one; it "
                     "is used with today's frozen built-in tokenizer: token ids may differ if ecomjax's templates "
                     "changed since it was written, and the policy then reads and writes other tokens than it "
                     "was trained on")


def _describe(name: str, sha256: str | None) -> str:
    """A tokenizer as an error message names it."""
    return f"{name!r} (sha256 {sha256[:12]})" if sha256 else repr(name)


def _same_source(recorded: str, name: str) -> bool:
    """Whether two tokenizer names (BUILTIN_TOKENIZER or a directory) name the same tokenizer."""
    if BUILTIN_TOKENIZER in (recorded, name):
        return recorded == name
    return Path(recorded).resolve() == Path(name).resolve()


def check_tokenizer(mgr: ocp.CheckpointManager, meta: dict, tokenizer: Any) -> None:
    """Refuse (ValueError naming both) a checkpoint written with another tokenizer than `tokenizer`; warn
    when a format-1 checkpoint names the built-in tokenizer (its ids cannot be checked)."""
    recorded, sha = meta.get("tokenizer", BUILTIN_TOKENIZER), meta.get("tokenizer_sha256")
    mine = tokenizer_sha256(tokenizer)
    same = sha == mine if sha is not None else _same_source(recorded, tokenizer.name_or_path)
    if not same:
        raise ValueError(f"checkpoint {mgr.directory}/{meta['step']} was written with tokenizer "
                         f"{_describe(recorded, sha)}, but this run's tokenizer is "
                         f"{_describe(tokenizer.name_or_path, mine)}: token ids would not match (resume with the "
                         "tokenizer it was trained with, or write the new run to another --out)")
    if sha is None and recorded == BUILTIN_TOKENIZER:
        warnings.warn(f"checkpoint {mgr.directory}/{meta['step']} {_OLD_BUILTIN_RISK}", UserWarning, stacklevel=2)


def saved_tokenizer(mgr: ocp.CheckpointManager, meta: dict) -> Any:
    """The tokenizer a checkpoint was written with: its saved files; for a format-1 checkpoint the directory
    it names, or the frozen built-in tokenizer with a warning."""
    step = meta["step"]
    recorded = meta.get("tokenizer", BUILTIN_TOKENIZER)
    if "tokenizer_sha256" not in meta:
        if recorded == BUILTIN_TOKENIZER:
            warnings.warn(f"checkpoint {mgr.directory}/{step} {_OLD_BUILTIN_RISK}", UserWarning, stacklevel=2)
            return builtin_tokenizer()
        return load_tokenizer(recorded)
    if meta["tokenizer_sha256"] == tokenizer_sha256(builtin_tokenizer()):
        return builtin_tokenizer()
    files = mgr.restore(step, args=ocp.args.Composite(**{TOKENIZER_ITEM: TokenizerFilesRestore()}))[TOKENIZER_ITEM]
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        tokenizer = load_tokenizer(tmp)
    tokenizer.name_or_path = recorded
    if tokenizer_sha256(tokenizer) != meta["tokenizer_sha256"]:
        raise ValueError(f"checkpoint {mgr.directory}/{step}: its tokenizer files do not match the tokenizer it "
                         f"records ({_describe(recorded, meta['tokenizer_sha256'])}); the checkpoint is damaged")
    return tokenizer


def restore(mgr: ocp.CheckpointManager, trainer: Trainer, step: int | None = None) -> dict | None:
    """Load the latest (or given) checkpoint into `trainer`; returns its metadata, or None if there is none.
    A checkpoint written for another model config or with another tokenizer is refused (ValueError)."""
    meta = read_meta(mgr, step)
    if meta is None:
        return None
    check_tokenizer(mgr, meta, trainer.tenv.tokenizer)
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
