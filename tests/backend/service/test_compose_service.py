"""``compose`` and exact durations against a live service with tiny random weights
(backend/service/usecases/compose.py, docs/protocol.md compose)."""

from __future__ import annotations

import numpy as np

from tests.backend.service.live import assert_progress_is_a_real_percentage, smpl_rig

TIMELINE = [{"prompt": "a person walks to the door", "seconds": 3.0},
            {"prompt": "the person knocks on the door", "seconds": 2.5, "seed": 5},
            {"prompt": "the person walks back", "seconds": 3.0}]


def test_hello_advertises_compose(backend):
    capabilities = backend.call("hello")["capabilities"]
    assert {"compose", "continue", "lead_in", "loop", "regenerate_segment"} <= set(capabilities)


def test_a_timeline_retargeted_at_24_fps_then_one_segment_regenerated(backend):
    request_id = backend.send("compose", segments=TIMELINE, seed=11, steps=2, fps=24,
                              retarget={"rig": smpl_rig(), "dst_fps": 24, "foot_lock": False})
    events, final = backend.wait(request_id)
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    take = final["data"]["takes"][0]
    assert take["frames"] == 204 and take["fps"] == 24.0 and take["joints"].shape == (204, 22, 3)
    assert [(s["start"], s["end"]) for s in take["segments"]] == [(0, 72), (72, 132), (132, 204)]
    assert take["segments"][1]["seed"] == 5 and take["seed"] == 11
    assert take["retarget"]["frame_count"] == 204
    codes = take["codes"]
    assert codes.dtype == np.int64 and codes.shape[1] == 6
    # Regenerate segment 2 (a new prompt): only its tokens and its transition's change.
    previous = [{**s, "seconds": (t["end"] - t["start"]) / 24} for s, t in zip(TIMELINE, take["segments"],
                                                                              strict=True)]
    segments = [dict(s) for s in previous]
    segments[2]["prompt"] = "the person sits down"
    again = backend.call("compose", segments=segments, seed=11, steps=2, fps=24,
                         regenerate={"codes": codes, "segments": previous, "index": 2})["takes"][0]
    assert again["frames"] == 204 and again["range"]["end"] <= 204
    changed = np.nonzero(np.any(again["codes"] != codes, axis=1))[0]
    assert changed.min() >= 26 and again["segments"][2]["prompt"] == "the person sits down"
    np.testing.assert_array_equal(again["codes"][:26], codes[:26])


def test_a_loop_and_a_continuation_of_a_posed_rig(backend):
    loop = backend.call("compose", segments=[{"prompt": "a person walks in place", "seconds": 4}],
                        loop=True, steps=2, seed=1, fps=30)["takes"][0]
    assert loop["frames"] == 120 and len(loop["loop"]["offset"]) == 3 and loop["loop"]["offset"][1] == 0.0

    from backend.retarget.inverse import pose_matrices_from_basis
    from backend.retarget.mapping import auto_map
    from backend.retarget.rig import RigDescription
    from backend.retarget.solver import retarget

    rig_dict = smpl_rig()
    rig = RigDescription.from_dict(rig_dict)
    walk = backend.call("compose", segments=[{"prompt": "a person walks", "seconds": 3}], steps=2,
                        seed=2)["takes"][0]["joints"]
    keys = retarget(walk, rig, auto_map(rig), src_fps=20, dst_fps=24)
    pose = pose_matrices_from_basis(rig, keys).astype(np.float32)
    data = backend.call("compose", segments=[{"prompt": "a person sits down", "seconds": 2}], steps=2, seed=3,
                        continue_from={"kind": "pose", "fps": 24, "rig": rig_dict, "pose_matrices": pose},
                        retarget={"foot_lock": False})
    take = data["takes"][0]
    assert take["fps"] == 24.0 and take["frames"] == 48 and take["retarget"]["frame_count"] == 48


def test_bad_timelines_are_refused_before_any_work(backend):
    one = [{"prompt": "a", "seconds": 2}]
    short = np.zeros((2, 22, 3), dtype=np.float32)
    broken = np.full((20, 22, 3), np.nan, dtype=np.float32)
    for fields, words in (
            (dict(segments=[*one, {"prompt": "b", "seconds": 0.2}], transition=0.6), "Segment 2 lasts 0.2 s"),
            (dict(segments=one, fps=24, retarget={"rig": smpl_rig(), "dst_fps": 30}), "differ"),
            (dict(segments=one, regenerate={"codes": np.zeros((4, 6), dtype=np.int64), "segments": one,
                                            "index": 0}), "holds 4 tokens"),
            (dict(segments=one, continue_from={"kind": "joints", "data": short, "fps": 20}),
             "less than one token"),
            (dict(segments=one, continue_from={"kind": "joints", "data": broken}), "NaN"),
            # the timeline is checked before the source is read (FK of up to 1e6 pose frames)
            (dict(segments=[*one, {"prompt": "b", "seconds": 0.2}], continue_from={"kind": "joints",
                                                                                 "data": broken}),
             "Segment 2 lasts 0.2 s"),
            # fractional codes are refused, not truncated to tokens (3.7 → 3)
            (dict(segments=one, regenerate={"codes": np.full((10, 6), 3.7), "segments": one, "index": 0}),
             "not MoMask tokens")):
        events, final = backend.wait(backend.send("compose", **fields))
        assert final["type"] == "error", (fields, final)
        assert final["error"]["code"] == "bad_input" and words in final["error"]["problem"], final
        assert final["error"]["fix"]
        assert not any(e.get("stage") in ("base", "residual") for e in events)


def test_generate_gives_exact_durations(backend):
    for fps, keys in ((24, 60), (25, 63), (30, 75), (60, 150)):
        take = backend.call("generate", prompts=["a person jumps"], seconds=2.5, steps=2, seed=1,
                            retarget={"rig": smpl_rig(), "dst_fps": fps, "foot_lock": False})["takes"][0]
        assert take["frames"] == 50 and take["retarget"]["frame_count"] == keys, fps


def test_generate_gives_the_longest_clip_at_any_scene_rate(backend):
    # 9.8 s (the add-on's maximum) at 25/30/60 fps needs keys just past model frame 195: the last key
    # holds the last pose instead of the request being refused as 200 model frames.
    for fps in (25, 30, 60, 29.97):
        take = backend.call("generate", prompts=["a person jumps"], seconds=9.8, steps=1, seed=1,
                            retarget={"rig": smpl_rig(), "dst_fps": fps, "foot_lock": False})["takes"][0]
        assert take["frames"] == 196 and take["retarget"]["frame_count"] == round(9.8 * fps), fps
    # compose slides its windows past 49 tokens instead, so its 9.8 s is exact too
    take = backend.call("compose", segments=[{"prompt": "a person jumps", "seconds": 9.8}], steps=1, seed=1,
                        fps=30, retarget={"rig": smpl_rig(), "dst_fps": 30, "foot_lock": False})["takes"][0]
    assert take["frames"] == 294 and take["retarget"]["frame_count"] == 294
