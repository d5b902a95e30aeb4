"""Shared pieces of the benchmarks: timing, the machine description, result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="Tiny sizes (smoke test).")
    p.add_argument("--runs", type=int, default=5, help="Timed repetitions (median reported).")
    p.add_argument("--seed", type=int, default=1, help="Seed of the simulated data.")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="Directory for the JSON result.")
    return p


def timed_runs(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``runs`` calls of ``fn`` and the last call's result."""
    seconds: list[float] = []
    result: Any = None
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, result


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def write_result(out_dir: Path, name: str, payload: dict[str, Any], *, quick: bool) -> Path:
    """Write ``payload`` (plus time and machine) as ``<name>[-quick].json``; return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "quick": quick,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path = out_dir / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n", encoding="utf-8")
    return path


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
