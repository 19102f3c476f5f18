"""Run metrics: one JSON object per step in `OUT/metrics.jsonl` (flushed every step, trimmed to the
checkpoint's step on resume so no step appears twice), TensorBoard event files in `OUT/tb/` when the optional
tensorboardX is installed (the `tb` extra), and PNG plots of reward and curriculum windows at the end."""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
TENSORBOARD_PACKAGE, TENSORBOARD_EXTRA = "tensorboardX", "tb"


class RunLog:
    """Append-only metrics of a run directory."""

    def __init__(self, out: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / METRICS_FILE
        self.rows = [r for r in read_metrics(self.path) if resume_step is not None and r["step"] < resume_step]
        with self.path.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.rows)
        self.writer = summary_writer(self.out / TENSORBOARD_DIR, resume_step) if tensorboard else None

    def write(self, metrics: dict) -> None:
        row = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(k, v, row["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def summary_writer(logdir: Path, purge_step: int | None) -> Any | None:
    """A tensorboardX `SummaryWriter` on `logdir`, or None when tensorboardX cannot be imported (warned once
    per process: the run goes on with metrics.jsonl only)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        _warn_no_tensorboard(str(err))
        return None
    return SummaryWriter(str(logdir), purge_step=purge_step)


@functools.cache
def _warn_no_tensorboard(reason: str) -> None:
    warnings.warn(f"{TENSORBOARD_PACKAGE} is not installed ({reason}): no TensorBoard event files are written; "
                  f"metrics.jsonl and the plots are. Install the optional extra with "
                  f"`pip install 'ecomjax[{TENSORBOARD_EXTRA}]'` (or `pip install {TENSORBOARD_PACKAGE}`), or pass "
                  f"--no-tensorboard to train without it.", RuntimeWarning, stacklevel=4)


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl (a torn last line from an interrupted write is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_run(rows: list[dict], out: str | Path) -> list[Path]:
    """`reward.png` (mean reward and success per step, with a moving average) and `curriculum.png`
    (each task's window [l, h] per step). Returns the files written."""
    from matplotlib.figure import Figure                     # no pyplot: leaves a notebook's backend alone

    out = Path(out)
    if not rows:
        return []
    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for key, label in (("reward_mean", "mean reward"), ("is_correct_mean", "success rate")):
        ys = [r.get(key) for r in rows]
        ax.plot(steps, ys, alpha=0.35, label=f"{label} (per step)")
        ax.plot(steps, moving_average(ys, 10), label=f"{label} (10-step mean)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files = [out / "reward.png"]
    fig.savefig(files[0], dpi=120)
    tasks = sorted({k.split("/")[1] for r in rows for k in r if k.startswith("curriculum/")})
    if tasks:
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        for t in tasks:
            line, = ax.plot(steps, [r.get(f"curriculum/{t}/h") for r in rows], drawstyle="steps-post",
                            label=f"{t} h")
            ax.plot(steps, [r.get(f"curriculum/{t}/l") for r in rows], ls="--", drawstyle="steps-post",
                    color=line.get_color(), label=f"{t} l")
        ax.set_xlabel("step")
        ax.set_ylabel("difficulty window")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        files.append(out / "curriculum.png")
        fig.savefig(files[1], dpi=120)
    return files


def moving_average(values: list, window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(float("nan") if v is None else float(v))
        recent = [x for x in acc[-window:] if not math.isnan(x)]
        out.append(sum(recent) / len(recent) if recent else float("nan"))
    return out
