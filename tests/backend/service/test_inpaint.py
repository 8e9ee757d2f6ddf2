"""``inpaint`` of feature, joint and pose sources against a live service
(backend/service/usecases/inpaint.py)."""

from __future__ import annotations

import numpy as np

from backend.motion.features import recover_from_ric
from tests.backend.service.live import assert_progress_is_a_real_percentage, smpl_rig


def test_inpaint_a_feature_source_reports_the_widened_range_and_keeps_the_rest(backend, source_features):
    source = source_features[:120]
    request_id = backend.send("inpaint", prompt="a person jumps", start=42, end=77, seed=3, steps=4,
                              source={"kind": "features", "data": source, "fps": 20})
    events, final = backend.wait(request_id)
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    take = final["data"]["takes"][0]
    assert take["range"]["start"] == 40 and take["range"]["end"] == 80
    assert take["source_range"] == {"start": 40, "end": 80, "fps": 20.0}
    assert take["frames"] == 120 and take["joints"].shape == (120, 22, 3)
    source_joints = recover_from_ric(source)
    outside = np.r_[0:40, 80:120]
    assert np.allclose(take["joints"][outside], source_joints[outside], atol=1e-5)
    assert not np.allclose(take["joints"][40:80], source_joints[40:80], atol=1e-3)


def test_inpaint_a_long_joint_source_through_a_window_around_the_range(backend, source_features):
    walk = recover_from_ric(source_features)
    long = np.concatenate([walk, walk[::-1]])                 # 398 frames: twice what the model takes
    data = backend.call("inpaint", prompt="a person kicks", start=250, end=290, seed=4, steps=3,
                        source={"kind": "joints", "data": long, "fps": 20})
    take = data["takes"][0]
    window, done = take["window"], take["range"]
    assert take["frames"] == len(long) and take["joints"].shape == long.shape
    assert window["end"] - window["start"] == 196 and window["start"] <= 250 and window["end"] >= 290
    assert done["start"] <= 250 and done["end"] >= 290 and done["end"] - done["start"] < 50
    outside = np.r_[0:done["start"], done["end"]:len(long)]
    assert np.allclose(take["joints"][outside], long[outside], atol=1e-5)
    assert not np.allclose(take["joints"][250:290], long[250:290], atol=1e-3)
    # A range longer than one window (188 frames) is filled window after window (docs/compose.md).
    events, final = backend.wait(backend.send("inpaint", prompt="a person kicks", start=10, end=390, steps=1,
                                              source={"kind": "joints", "data": long, "fps": 20}))
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    take = final["data"]["takes"][0]
    assert take["range"] == {"start": 8, "end": 392, "fps": 20.0} and take["frames"] == len(long)
    assert np.allclose(take["joints"][:8], long[:8], atol=1e-5)
    assert np.allclose(take["joints"][392:], long[392:], atol=1e-5)


def test_inpaint_a_posed_rig_at_24_fps(backend, source_features):
    from backend.retarget.inverse import pose_matrices_from_basis
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription
    from backend.retarget.solver import retarget

    rig_dict = smpl_rig()
    rig = RigDescription.from_dict(rig_dict)
    keys = retarget(recover_from_ric(source_features[:100]), rig, auto_map(rig), src_fps=20, dst_fps=24)
    pose = pose_matrices_from_basis(rig, keys).astype(np.float32)
    frames_24 = pose.shape[0]
    data = backend.call("inpaint", prompt="a person turns around", start=30, end=61, seed=2, steps=3,
                        source={"kind": "pose", "fps": 24, "rig": rig_dict, "pose_matrices": pose},
                        retarget={"foot_lock": False})
    take = data["takes"][0]
    assert take["source_frames"] == frames_24
    assert take["range"]["start"] % 4 == 0 and take["range"]["end"] % 4 == 0
    assert take["source_range"]["start"] <= 30 and take["source_range"]["end"] >= 61
    assert take["source_range"]["fps"] == 24.0
    assert take["retarget"]["fps"] == 24.0 and abs(take["retarget"]["frame_count"] - frames_24) <= 1
    assert {b["name"] for b in take["retarget"]["bones"]} <= set(rig_dict["bone_names"])


def test_inpaint_keeps_an_elevated_pose_source_at_its_height_and_ignores_in_place(backend, source_features):
    """A rig animated 0.5 m up (a platform): the answer is placed with the transform that read it, so
    the untouched frames reproduce the rig's own root and the regenerated range stays 0.5 m up;
    ``in_place`` is ignored (the root must follow the source around the range); keys cover the
    source's frames exactly, up to a range ending on the last frame."""
    from backend.retarget.inverse import pose_matrices_from_basis
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription
    from backend.retarget.solver import retarget

    rig_dict = smpl_rig()                                    # Z up
    rig = RigDescription.from_dict(rig_dict)
    keys = retarget(recover_from_ric(source_features[:101]), rig, auto_map(rig), src_fps=20, dst_fps=24)
    # 120 frames at 24 fps are 100 model frames, whole tokens: the range can end on the last frame,
    # which a 24 → 20 → 24 fps round trip (119 keys) used to drop.
    grounded = pose_matrices_from_basis(rig, keys)[:120]
    raised = grounded.copy()
    raised[:, :, 2, 3] += 0.5                                # the whole character, 0.5 m up
    pelvis = rig_dict["bone_names"].index("pelvis")
    rest = rig.rest_matrices[pelvis]

    def inpaint(pose):
        take = backend.call("inpaint", prompt="a person jumps", start=30, end=len(pose), seed=5, steps=3,
                            source={"kind": "pose", "fps": 24, "rig": rig_dict,
                                    "pose_matrices": pose.astype(np.float32)},
                            retarget={"foot_lock": True, "in_place": True})["takes"][0]
        out = take["retarget"]
        assert out["frame_count"] == len(pose) and take["source_range"]["end"] == len(pose)
        assert out["root"]["name"] == "pelvis"
        return take["source_range"]["start"], out["root"]["location"] @ rest[:3, :3].T + rest[:3, 3]

    a, up_heads = inpaint(raised)
    a_grounded, heads = inpaint(grounded)
    assert a == a_grounded
    # outside the range: the rig's own root (its horizontal travel and its height)
    assert np.abs(up_heads[:a] - raised[:a, pelvis, :3, 3]).max() < 0.02
    # the model sees the same grounded clip either way; the answer goes back where each source was
    assert np.allclose(up_heads - heads, [0.0, 0.0, 0.5], atol=1e-4)


def test_an_in_between_over_300_s_is_refused_before_the_models_load(backend, source_features):
    walk = recover_from_ric(source_features)
    long = np.concatenate([walk, walk[::-1]] * 16)            # 6368 frames, 318 s at 20 fps
    events, final = backend.wait(backend.send("inpaint", prompt="a person kicks", start=10, end=6300, steps=1,
                                              source={"kind": "joints", "data": long, "fps": 20}))
    assert final["type"] == "error" and "more than 300 s" in final["error"]["problem"], final
    assert final["error"]["fix"] and not [e for e in events if e.get("stage")], events
