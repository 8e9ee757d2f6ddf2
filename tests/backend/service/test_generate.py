"""``generate`` against a live service with tiny random weights (backend/service/usecases/generate.py)."""

from __future__ import annotations

import numpy as np

from tests.backend.service.live import STUB_RIG, Backend, assert_progress_is_a_real_percentage, smpl_rig


def test_generate_streams_step_progress_and_returns_every_variation(backend):
    request_id = backend.send("generate", prompts=["a person walks forward"], seconds=[2.1], seed=11,
                              variations=3, steps=6)
    events, final = backend.wait(request_id)
    assert final["type"] == "result", final
    assert_progress_is_a_real_percentage(events)
    stages = [e["stage"] for e in events]
    assert stages.count("base") == 6 and stages.count("residual") == 5 and stages.count("decode") == 1
    load = 1 if "load" in stages else 0
    assert events[-1]["total"] == load + 6 + 5 + 1
    takes = final["data"]["takes"]
    assert len(takes) == 3
    for i, take in enumerate(takes):
        assert take["index"] == i and take["seed"] == 11 and take["prompt"] == "a person walks forward"
        assert take["frames"] == 42                      # 2.1 s → exactly 42 frames (44 generated)
        assert take["joints"].shape == (42, 22, 3) and take["joints"].dtype == np.float32
        assert np.isfinite(take["joints"]).all()
    assert not np.array_equal(takes[0]["joints"], takes[1]["joints"]), "variations must differ"
    assert backend.call("hello")["weights"]["loaded"] is True


def test_the_same_seed_gives_the_same_take_and_no_seed_reports_the_one_drawn(backend):
    first = backend.call("generate", prompts=["a person jumps"], frames=[32], seed=5, steps=3)["takes"][0]
    again = backend.call("generate", prompts=["a person jumps"], frames=[32], seed=5, steps=3)["takes"][0]
    assert np.array_equal(first["joints"], again["joints"])
    drawn = backend.call("generate", prompts=["a person jumps"], frames=32, steps=3)["takes"][0]
    redo = backend.call("generate", prompts=["a person jumps"], frames=32, steps=3,
                        seed=drawn["seed"])["takes"][0]
    assert 0 <= drawn["seed"] < 2**31 and np.array_equal(drawn["joints"], redo["joints"])


def test_bad_settings_and_lengths_are_refused_before_the_models_load(tiny_weights, tmp_path):
    """A first request with a wrong setting answers at once: no seconds of loading first."""
    fresh = Backend.serve(tiny_weights, tmp_path / "fresh.log")
    try:
        for bad in ({"steps": 0}, {"topk": 1.5}, {"flow": "turbo"}, {"frames": [400]}):
            request = {"prompts": ["a person waves"], "frames": [40], **bad}
            events, final = fresh.wait(fresh.send("generate", **request))
            assert final["type"] == "error" and final["error"]["code"] == "bad_input", (bad, final)
            assert not any(e["stage"] == "load" for e in events), bad
        assert fresh.call("hello")["weights"]["loaded"] is False
    finally:
        fresh.close()


def test_generate_can_retarget_and_refuses_an_unmappable_rig_before_generating(backend):
    data = backend.call("generate", prompts=["a person runs"], frames=[40], seed=1, steps=3,
                        retarget={"rig": smpl_rig(), "dst_fps": 24})
    take = data["takes"][0]
    assert take["retarget"]["fps"] == 24.0 and take["retarget"]["frame_count"] in (47, 48)
    assert take["mapping"]["convention"] == "smplx"
    events, final = backend.wait(backend.send("generate", prompts=["a person runs"], frames=[40],
                                              retarget={"rig": STUB_RIG}))
    assert final["error"]["code"] == "bad_rig" and "left_wrist" in final["error"]["problem"]
    assert not [e for e in events if e["stage"] in ("base", "residual")], "generated before checking the rig"
