"""Paired timing of the detector against another checkout, for a machine whose speed drifts.

Runs this tree's detector and another tree's (a ``git worktree`` of an older commit, say)
alternately on the same simulated night, each in a fresh process, so that both see the same
share of whatever else the machine is doing:

- offline: ``detect_recording`` over the night (wall seconds per run);
- stream: 100 devices' 1 s chunks (``push_acc`` + ``push_emg`` + ``pop_series``) after a 5 s
  warm-up, chunks per CPU second.

    git worktree add /tmp/base 8a98d74
    python -m bench.paired /tmp/base [--rounds 2] [--hours 8]
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, pickle, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from detection.offline import detect_recording
from detection.stream import StreamDetector
night = pickle.load(open(sys.argv[2], "rb"))
emg, acc = night["emg"], night["acc"]
offline = []
for _ in range(3):
    t0 = time.perf_counter()
    detect_recording(emg, 1000.0, acc, 50.0)
    offline.append(time.perf_counter() - t0)
devices, seconds = 100, 30
offsets = np.random.default_rng(2).integers(0, emg.shape[0] // 1000 - seconds - 10, devices)
detectors = [StreamDetector(f"d{d}") for d in range(devices)]
cpu0 = 0.0
for s in range(seconds + 5):
    if s == 5:
        cpu0 = time.process_time()
    t = 1_767_650_000_000_000 + s * 1_000_000
    for d, det in enumerate(detectors):
        i = int(offsets[d]) + s
        det.push_acc(acc[i * 50 : (i + 1) * 50], t, 50.0)
        det.push_emg(emg[i * 1000 : (i + 1) * 1000], t, 1000.0)
        det.pop_series()
rate = devices * seconds / (time.process_time() - cpu0)
print(json.dumps({"offline_s": offline, "stream_chunks_per_cpu_s": rate}))
"""


def run_tree(tree: Path, night_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(night_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other", type=Path, help="The other checkout (its root directory).")
    p.add_argument("--rounds", type=int, default=2, help="Alternations of the two trees.")
    p.add_argument("--hours", type=float, default=8.0, help="Length of the night.")
    args = p.parse_args(argv)
    if not (args.other / "detection" / "stream.py").is_file():
        print(
            f"{args.other} has no detection/stream.py: not a CrampWatch checkout", file=sys.stderr
        )
        return 2
    from bench.bench_detector import simulated_night

    rec = simulated_night(1, args.hours * 3600)
    with tempfile.TemporaryDirectory(prefix="bench-paired-") as tmp:
        night_path = Path(tmp) / "night.pkl"
        night = {
            "emg": np.ascontiguousarray(rec.emg_uv, dtype=np.float64),
            "acc": np.ascontiguousarray(rec.acc_g, dtype=np.float64),
        }
        night_path.write_bytes(pickle.dumps(night))
        print("| round | tree | offline s (3 runs) | stream chunks per CPU s |")
        print("|---|---|---|---|")
        for k in range(args.rounds):
            for name, tree in (("other", args.other), ("this", HERE)):
                r = run_tree(tree, night_path)
                runs = ", ".join(f"{t:.2f}" for t in r["offline_s"])
                print(f"| {k + 1} | {name} | {runs} | {r['stream_chunks_per_cpu_s']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
