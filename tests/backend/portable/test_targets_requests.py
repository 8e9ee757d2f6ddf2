"""The ``targets`` request on the wire: what the add-on builds arrives typed, and pose targets that
cannot be hit are refused by name with the fix before any work (docs/protocol.md, targets)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.portable import messages as m
from backend.portable import protocol as p

RIG = m.RigSpec(bone_names=("hips", "spine"), parents=(-1, 0),
                rest_matrices=np.tile(np.eye(4, dtype=np.float32), (2, 1, 1)))


def request(frames=(0.0, 30.0, 59.0), poses: int | None = None, take_frames: int = 60) -> m.TargetsRequest:
    pose = np.tile(np.eye(4, dtype=np.float32), (len(frames) if poses is None else poses, 2, 1, 1))
    source = m.PoseSource(rig=RIG, pose_matrices=pose, fps=24.0)
    return m.TargetsRequest(prompt="a person walks", source=source,
                            target_frames=tuple(frames), take_frames=take_frames, seed=4, blend_frames=3,
                            retarget=m.RetargetSpec(dst_fps=24.0, foot_lock=False))


def parse(req: m.TargetsRequest) -> m.Request:
    return m.parse_request(p.decode_message(p.encode_message(req.to_message(3)), kind="request"))


def test_a_targets_request_round_trips() -> None:
    back = parse(request())
    assert isinstance(back, m.TargetsRequest)
    assert back.target_frames == (0.0, 30.0, 59.0) and back.take_frames == 60 and back.blend_frames == 3
    assert back.source.pose_matrices.shape == (3, 2, 4, 4) and back.source.fps == 24.0
    assert back.retarget.dst_fps == 24.0 and back.retarget.foot_lock is False


@pytest.mark.parametrize("req, words", [
    (request(poses=2), "lists 3 frames for 2 posed rows"),
    (request(frames=(0.0, 30.0, 30.0)), "not strictly increasing"),
    (request(frames=(0.0, 60.0)), "outside the take's frames 0-59"),
    (request(frames=(0.0, -1.0)), "outside [0, 1000000]"),
    (request(frames=tuple(float(5 * i) for i in range(50)), take_frames=300), "outside [1, 49]"),
])
def test_bad_targets_are_refused_by_name(req, words) -> None:
    with pytest.raises(p.ProtocolError) as refused:
        parse(req)
    assert words in str(refused.value.problem) and refused.value.fix


def test_the_least_spacing_puts_targets_in_different_tokens() -> None:
    assert [m.min_target_spacing(fps, 20.0) for fps in (20, 24, 25, 30, 60)] == [4, 5, 5, 6, 12]
    for fps in (24.0, 30.0, 25.0):
        spacing = m.min_target_spacing(fps, 20.0)
        for start in range(40):                     # any alignment: the tokens differ
            assert int(start * 20 / fps) // 4 != int((start + spacing) * 20 / fps) // 4


def test_target_problems_name_the_scene_frames_and_the_fix() -> None:
    assert m.pose_target_problem([0, 29, 59], 60, 24.0, 20.0) is None
    problem, fix = m.pose_target_problem([0, 3], 60, 24.0, 20.0, first=101)
    assert "frames 101 and 104 are 3 frames apart" in problem and "at least 5 frames apart" in fix
    problem, fix = m.pose_target_problem([0, 70], 60, 24.0, 20.0, first=1)
    assert "frame 71 is outside the take's frames 1-60" in problem and "Extend" in fix
    assert "No pose targets" in m.pose_target_problem([], 60, 24.0, 20.0)[0]
    assert m.take_model_frames(60, 24.0, 20.0) == 52 and m.take_model_frames(97, 24.0, 20.0) == 84
