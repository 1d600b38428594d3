"""`scripts.bench_retrieval --repeat`: which of a store's runs the table shows."""

from __future__ import annotations

from scripts.bench_retrieval import median_run


def test_the_median_run_is_shown_with_every_wall_time() -> None:
    runs = [{"wall": w, "cpu": w / 2, "n": i} for i, w in enumerate([0.9, 0.3, 0.5, 0.4])]
    got = median_run(runs)
    assert got["n"] == 3 and got["wall"] == 0.4  # the lower middle of 0.3, 0.4, 0.5, 0.9
    assert got["walls"] == [0.3, 0.4, 0.5, 0.9]
    assert median_run(runs[:3])["wall"] == 0.5


def test_failed_runs_are_left_out_and_all_failed_shows_the_error() -> None:
    runs = [{"error": "exit 1"}, {"wall": 0.7, "cpu": 0.1}, {"error": "no answer in 1800 s"}]
    assert median_run(runs)["wall"] == 0.7
    assert median_run([{"error": "exit 1"}]) == {"error": "exit 1"}
