"""Smoke runs of every benchmark at tiny sizes: they run, and their figures are consistent."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np
import pytest

from bench import bench_detector, bench_e2e, bench_stream, bench_sync, run_all
from bench.pipeline import worker_core


def result(out: Path, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((out / f"{name}-quick.json").read_text())


@pytest.mark.slow
def test_detector_bench_times_ours_the_floor_and_the_anchors(tmp_path: Path) -> None:
    assert bench_detector.main(["--quick", "--runs", "1", "--out", str(tmp_path)]) == 0
    doc = result(tmp_path, "detector")
    assert doc["signal_s"] == 600.0 and doc["machine"]["nproc"] >= 1
    ours, floor = doc["ours"], doc["floor"]
    assert ours["realtime_x"] == pytest.approx(doc["signal_s"] / ours["median_s"])
    pairs = [o / f for o, f in zip(ours["seconds"], floor["seconds"], strict=True)]
    assert doc["ours_over_floor"] == pytest.approx(statistics.median(pairs))
    assert doc["ours_over_floor"] > 1  # ours includes that band-pass pass and more
    pieces = doc["floor_in_pieces"]["seconds"]
    in_pieces = [o / f for o, f in zip(ours["seconds"], pieces, strict=True)]
    assert doc["ours_over_floor_in_pieces"] == pytest.approx(statistics.median(in_pieces))
    assert doc["ours_over_floor_in_pieces"] > 1
    for anchor in ("neurokit2", "biosppy"):
        a = doc["anchors"][anchor]
        assert a["anchor_over_ours"] == pytest.approx(ours["realtime_x"] / a["realtime_x"])


@pytest.mark.slow
def test_stream_bench_counts_every_chunk(tmp_path: Path) -> None:
    argv = ["--quick", "--devices", "3", "--seconds", "5", "--out", str(tmp_path)]
    assert bench_stream.main(argv) == 0
    doc = result(tmp_path, "stream")
    assert doc["chunks"] == 15
    for workload in bench_stream.WORKLOADS:
        for mode in ("alone", "many"):
            figures = doc[workload][mode]
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
            assert figures["live_wearers_per_core"] == figures["chunks_per_core_s"] > 0
            assert figures["runs"][0]["chunks_per_cpu_s"] * figures["runs"][0]["cpu_s"] == (
                pytest.approx(15)
            )
        assert doc[workload]["many_over_alone"] > 0
    assert doc["live_wearers_per_core"] == doc["night"]["many"]["live_wearers_per_core"]


def test_the_night_population_mixes_nights_and_spreads_offsets() -> None:
    population = bench_stream.night_population(20, 5, seed=3, night_s=300)
    emgs = {id(emg) for emg, _, _ in population}
    assert len(emgs) == 2  # a typical and a frequent-cramps night
    frequent = [d for d, (emg, _, _) in enumerate(population) if emg is population[0][0]]
    assert frequent == list(range(0, 20, bench_stream.FREQUENT_EVERY))
    offsets = [offset for _, _, offset in population]
    assert min(offsets) >= 0 and max(offsets) <= 300 - 5
    assert len(set(offsets)) > 10
    for emg, acc, offset in population:
        assert emg.shape[0] >= (offset + 5) * 1000 and acc.shape[0] >= (offset + 5) * 50


@pytest.mark.slow
@pytest.mark.integration
def test_e2e_and_sync_benches_store_what_they_publish(tmp_path: Path) -> None:
    argv = ["--quick", "--devices", "1", "--minutes", "2", "--backends", "sqlite"]
    argv += ["--many-devices", "6", "--many-minutes", "0.5"]
    assert bench_e2e.main([*argv, "--out", str(tmp_path)]) == 0
    cases = result(tmp_path, "e2e")["cases"]
    case, many = cases[0], cases[-1]
    cores = worker_core()
    if cores is None:  # one CPU: every workload shares it
        assert len(cases) == 2 and case["cores"] is None
    else:  # the worker's threads on its own CPU, and the same workload again sharing them
        worker_cpus = sorted(cores[0])
        assert case["cores"] == many["cores"] == [worker_cpus, sorted(cores[1])]
        for name in ("ingest-processing", "paho-mqtt-client-bench-worker"):
            assert case["thread_cpus"][name] == worker_cpus
        shared = cases[1]
        assert len(cases) == 3 and shared["cores"] is None
        assert (shared["devices"], shared["scenario"]) == (1, "frequent-cramps")
        assert shared["thread_cpus"]["ingest-processing"] == sorted(os.sched_getaffinity(0))
        assert shared["frames_released"] == shared["frames_planned"]
    assert (case["devices"], case["scenario"]) == (1, "frequent-cramps")
    assert (many["devices"], many["minutes_per_device"]) == (6, 0.5)
    assert many["scenario"] == bench_e2e.LIVE_MIX
    assert many["frames_planned"] == 6 * (30 + 30)  # 30 s of 1 s EMG and ACC frames each
    for c in (case, many):
        assert c["frames_released"] == c["frames_published"] == c["frames_planned"]
        assert c["dead_letters"] == 0
        assert c["episodes"]["matched"] <= c["episodes"]["labelled"]
    # the CPU figures describe the same run: ms per frame and wearers per CPU second agree
    frames_per_cpu_s = case["frames_released"] / case["worker_cpu_s"]
    assert case["cpu_ms_per_frame"] == pytest.approx(1000 / frames_per_cpu_s)
    samples_per_cpu_s = case["samples_per_s"] * case["elapsed_s"] / case["worker_cpu_s"]
    assert case["wearers_per_cpu_s"] == pytest.approx(samples_per_cpu_s / 1150)
    assert bench_sync.main(["--quick", "--hours", "0.05", "--out", str(tmp_path)]) == 0
    (sync,) = result(tmp_path, "sync")["cases"]
    assert sync["runs"][0]["frames"] == 2 * 6  # 3 min in 30 s sync frames, both streams
    assert sync["median_s"] >= sync["runs"][0]["publish_s"]


def test_summary_rows_read_the_result_documents() -> None:
    doc = {
        "ours": {"realtime_x": 25000.0},
        "ours_over_floor": 2.5,
        "ours_over_floor_in_pieces": 4.0,
        "anchors": {"neurokit2": {"anchor_over_ours": 300.0}, "biosppy": {"unavailable": "x"}},
    }
    rows = run_all._summary_rows("detector", doc)
    assert ("detector", "offline real-time factor", "25,000x") in rows
    assert ("detector", "neurokit2 time / ours", "300x") in rows
    assert ("detector", "ours / the same sosfilt in 60 s pieces", "4.00x") in rows
    assert len(rows) == 4


@pytest.mark.slow
def test_paired_runs_time_both_trees(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from bench import paired

    root = Path(paired.__file__).resolve().parent.parent
    assert paired.main([str(root), "--rounds", "1", "--hours", "0.05"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["other", "this"]
    assert all(float(row.split("|")[4].replace(",", "")) > 0 for row in rows)
    assert paired.main([str(tmp_path)]) == 2


def test_e2e_runs_combine_into_medians_pooled_latencies_and_the_worst_counts() -> None:
    def run(rate: float, latencies: list[float], late: int) -> dict[str, object]:
        figures = {key: rate for key in bench_e2e.MEDIAN_FIGURES}
        return figures | {
            "backend": "sqlite",
            "alert_latencies_ms": latencies,
            "late_frames": late,
            "gaps_declared": 0,
            "dead_letters": 0,
            "rss_peak_mb": rate / 10,
            "episodes": {"stored": 1, "labelled": 1, "matched": 1},
        }

    runs = [run(100.0, [1.0, 2.0], 0), run(300.0, [3.0], 2), run(200.0, [4.0, 5.0, 6.0], 1)]
    case = bench_e2e.combine(runs)
    assert case["live_wearers"] == 200.0 and case["live_wearers_range"] == [100.0, 300.0]
    assert case["alerts_timed"] == 6 and case["alert_p50_ms"] == 3.5  # over all runs' alerts
    assert case["late_frames"] == 2 and case["rss_peak_mb"] == 30.0 and case["runs"] == 3
    assert "alert_latencies_ms" not in case


@pytest.mark.slow
@pytest.mark.integration
def test_api_bench_loads_a_served_api_with_history_and_summary_requests(tmp_path: Path) -> None:
    from bench import bench_api

    argv = ["--quick", "--requests", "20", "--concurrency", "1", "3", "--out", str(tmp_path)]
    assert bench_api.main(argv) == 0
    doc = result(tmp_path, "api")
    assert [level["concurrency"] for level in doc["levels"]] == [1, 3]
    for level in doc["levels"]:
        kinds = level["by_kind"]
        assert {k: kinds[k]["n"] for k in bench_api.KINDS} == dict.fromkeys(bench_api.KINDS, 4)
        assert kinds["all"]["n"] == 20 and level["answered"] == 24  # + 4 cursor fetches
        assert level["requests_per_s"] == pytest.approx(level["answered"] / level["wall_s"])
        assert 0 < kinds["all"]["p50_ms"] <= kinds["all"]["p99_ms"]
    assert doc["p50_ms"] == doc["levels"][0]["by_kind"]["all history"]["p50_ms"]
    rows = run_all._summary_rows("api", doc)
    assert rows[0][1] == "history, 5 wearers x 1 year: p50 / p95"
    assert [r[1] for r in rows[1:]] == [
        "nights: p50 / p95",
        "weekly: p50 / p95",
        "1 connections: requests/s, p95 of all",
        "3 connections: requests/s, p95 of all",
    ]


def test_the_floor_in_pieces_computes_the_same_filter() -> None:
    x = np.random.default_rng(5).normal(size=130_001)
    sos = bench_detector.signal.butter(4, [20.0, 450.0], "bandpass", fs=1000.0, output="sos")
    whole = bench_detector.signal.sosfilt(sos, x)
    last = bench_detector.sosfilt_in_pieces(sos, x, 60_000)
    assert last.shape == (10_001,)
    assert np.array_equal(last, whole[-10_001:])  # state carried: the same values to the bit
