"""Steering from the panel in real Blender 4.2, 4.5 and 5.0 (tests/blender/steer_request.py), against a
real backend with tiny random weights: what Generate sends for a path, waypoints and root motion, and
what it refuses.

* A Bezier circle (r = 2 m, moved and lifted), a NURBS S-curve and a poly line with a 90° corner (the
  object turned 90°) become world-space ground paths (z = 0) with no step over 2 cm: every point within
  6 mm of the circle (its 48-segment evaluation), length within 0.5% of 4π, closed; the S-curve from end
  to end with its swing; the polyline's corner kept exactly, length 6 m.
* "Keep Speed" sends the path's planned duration (length / 1.3 m/s, at most 9.8 s); "Fit Duration" the
  panel's seconds; facing is sent.
* Waypoints (empties in the list) are sent in take frames from the start frame; root motion and ground.
* Refused before sending, with the problem and the fix, nothing changed: a one-point curve, a curve
  of zero length or no ground length, two splines, no curve, waypoints out of order, before the take
  or after its end, In Place with a root bone, a root bone the rig lacks.
* A result whose travel went onto the object is keyed on the object in the same take.
* The Path & Root Motion and Apply Motion sub-panels draw every setting and button (each property and
  operator they name exists), in each of their states.
"""

from __future__ import annotations

import pytest

from tests.conftest import BLENDER_VERSIONS, assert_cases_passed, passed_case, run_blender

CASES = {"circle_bezier_becomes_a_closed_ground_path", "s_curve_nurbs_keeps_its_ends_and_fits_the_duration",
         "polyline_with_a_right_angle_keeps_the_corner", "waypoints_and_root_motion_are_sent_in_take_frames",
         "bad_steering_is_refused_before_sending", "object_root_motion_is_keyed_on_the_object",
         "generation_walks_the_circle", "the_panels_draw_their_settings"}


@pytest.fixture(scope="module", params=BLENDER_VERSIONS)
def results(request, tiny_weights, tmp_path_factory) -> dict:
    return run_blender(request.param, "steer_request.py", str(tiny_weights), timeout=900,
                       env={"MOMASK_USER_DIR": str(tmp_path_factory.mktemp("user"))})


def test_every_case_passed(results):
    assert_cases_passed(results, CASES)


def test_the_circle_is_sent_as_the_circle(results):
    values = passed_case(results, "circle_bezier_becomes_a_closed_ground_path")["values"]
    assert values["radial_error_mm"] <= 6.0 and values["points"] >= 4 * 3.14159 / 0.02


def test_every_bad_input_names_its_fix(results):
    problems = passed_case(results, "bad_steering_is_refused_before_sending")["values"]["problems"]
    assert len(problems) == 10 and all(" Fix: " in p for p in problems.values()), problems


def test_a_generation_goes_round_the_circle_and_reports_the_stride_change(results):
    """The backend's steering, seen in Blender: a take generated with "Fit Duration" along the circle
    goes once round it, and the panel reports how much the strides changed. The tiny random weights
    make no walk, so how close it stays is measured on a real walk (test_apply_motion.py: ≤ 2 cm)."""
    walk = passed_case(results, "generation_walks_the_circle")["values"]
    print(f"Blender {results['blender']}: travel {walk['mean_distance_cm']:.2f} cm from the circle (mean), "
          f"turned {walk['turned_deg']:.0f} deg; {walk['message']}")
    assert abs(walk["turned_deg"]) >= 330
    assert "Path: strides x" in walk["message"]
