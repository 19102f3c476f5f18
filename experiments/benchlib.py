"""Shared plumbing of the benchmark scripts: timing medians, machine description, BENCHMARKS.md sections."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_FILE = REPO / "BENCHMARKS.md"


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of the first call (compile + run) and median of the timed calls."""

    first_s: float
    median_s: float

    @property
    def compile_s(self) -> float:
        return max(self.first_s - self.median_s, 0.0)


def time_call(fn: Callable[[], object], runs: int) -> Timing:
    """Times `fn` once cold and `runs` times warm (blocking on its result)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return Timing(first, statistics.median(times))


def machine() -> str:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    device = jax.devices()[0]
    return f"{platform.platform()}, {platform.machine()}, nproc={nproc}, jax {jax.__version__} on {device.platform} ({device.device_kind})"


def command() -> str:
    return shlex.join(["python", *sys.argv])


def replace_section(text: str, heading: str, body: str) -> str:
    """`text` with the markdown section `heading` (up to the next "## ") replaced or appended."""
    lines = text.splitlines()
    section = [heading, "", *body.strip("\n").splitlines(), ""]
    if heading not in lines:
        prefix = lines + ([""] if lines and lines[-1] else [])
        return "\n".join(prefix + section).rstrip("\n") + "\n"
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + section + lines[end:]).rstrip("\n") + "\n"


def write_section(heading: str, body: str) -> None:
    existing = BENCHMARKS_FILE.read_text() if BENCHMARKS_FILE.exists() else "# Benchmarks\n"
    BENCHMARKS_FILE.write_text(replace_section(existing, heading, body))
    print(f"wrote {heading!r} to {BENCHMARKS_FILE}")


def header(notes: str) -> str:
    today = datetime.date.today().isoformat()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"- date: {today}\n- machine: {machine()}; load average (1, 5, 15 min) at the end: {load}\n"
            f"- command: `{command()}`\n- {notes}\n")




def write_device_section(heading: str, body: str) -> None:
    """`write_section` under `heading`, suffixed with the accelerator's name when not run on the CPU."""
    device = jax.devices()[0]
    write_section(heading if device.platform == "cpu" else f"{heading} ({device.device_kind})", body)
