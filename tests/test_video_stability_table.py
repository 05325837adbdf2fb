"""The labelled-video benchmark's table says in words what its results file holds (built from a small results dict;
the benchmark itself needs shared/ media and runs outside the tests)."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # as when it runs as a script: its sibling talking_head.py
_spec = importlib.util.spec_from_file_location("video_stability", ROOT / "benchmarks" / "video_stability.py")
video_stability = importlib.util.module_from_spec(_spec)
sys.modules["video_stability"] = video_stability  # its dataclasses look their module up there
_spec.loader.exec_module(video_stability)


def summary(extra_changes: int) -> dict:
    """One system's per-kind summaries, as ``evaluate`` writes them."""
    return {"clip": {"mean_changes": 0.67, "held_is_acted": 4, "held_is_crowd": 4, "mean_frame_accuracy": 0.525},
            "cut": {"mean_cut_delay_s": 0.682, "max_cut_delay_s": 0.868, "cuts_within_target": 14,
                    "cuts_with_a_new_state": 14},
            "sequence": {"mean_changes": 5 + extra_changes, "seconds_per_change": 1.8,
                         "extra_changes": extra_changes, "segments_held_right": 3},
            "footage": {"mean_changes": 2, "seconds_per_change": 2.28},
            "talking": {"videos": 0}}


def test_a_sweep_point_is_named_in_words_and_a_missed_true_change_is_not_called_beyond():
    point = json.dumps({"smoothing.time_constant_s": 0.3, "smoothing.uncertain_after_s": 2.0})
    table = video_stability.markdown({f"{point} @ 5 fps": {"summary": summary(-1)}})
    row = table.splitlines()[2]
    assert row.startswith("| time constant 0.3 s, uncertain after 2.0 s @ 5 fps |")
    assert "1 fewer than the 5 true" in row and "beyond" not in row
    assert "not fetched" in row


def test_a_system_name_stays_as_it_is():
    row = video_stability.markdown({"ours @ file rate": {"summary": summary(1)}}).splitlines()[2]
    assert row.startswith("| ours @ file rate | 0.67 | 4 | 4 | 0.525 | 0.682 / 0.868 | 14 of 14 | 6 (1.8; 1 beyond")
