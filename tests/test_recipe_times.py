"""The default recipe's stage times: recorded for stages that ran, quoted by the model card."""

from __future__ import annotations

import json

from benchmarks.train_default_bundle import RunTimes, run_times


def _make_calibration(work):
    (work / "calibration.json").write_text("{}")
    return "calibrated"


def test_only_stages_that_ran_are_timed_and_a_resumed_run_says_so(tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    times = RunTimes(fresh, threads=1)
    assert times.stage("calibrate", _make_calibration, fresh) == "calibrated"
    figures = json.loads((fresh / "times.json").read_text())
    assert figures["resumed"] == [] and set(figures["seconds"]) == {"calibrate"}
    assert "calibrate 0.0 min" in run_times(fresh)[0] and len(run_times(fresh)) == 1

    # a second run over the same folder reuses the output: no time, and the card says resumed
    again = RunTimes(fresh, threads=2)
    again.stage("calibrate", _make_calibration, fresh)
    again.record("training, stages 1-6", 61.0)
    lines = run_times(fresh)
    assert "torch threads per process: 2" in lines[0] and "training, stages 1-6 1.0 min" in lines[0]
    assert "calibrate" not in lines[0]
    assert lines[1] == "Resumed: these stages' outputs were already there: calibrate."


def test_a_run_without_times_says_it_kept_none(tmp_path):
    assert run_times(tmp_path) == ["This run kept no stage times (it predates WORK/times.json)."]
