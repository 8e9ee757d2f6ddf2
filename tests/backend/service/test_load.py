"""``load`` against a live service (backend/service/usecases/load.py)."""

from __future__ import annotations

import numpy as np

from tests.backend.service.live import Backend


def test_load_with_prompts_encodes_them_ahead_for_the_generate_that_follows(backend):
    """The add-on's warm-up: `load` with the prompt being typed puts its CLIP features in the cache the
    fast flow reads, so Generate skips the text tower; prompts already there are not encoded again."""
    first = backend.call("load", prompts=["  a person does a handstand ", "a person does a handstand"])
    assert first["loaded"] is True and first["encoded"] == 1     # stripped, then deduplicated
    assert backend.call("load", prompts=["a person does a handstand"])["encoded"] == 0
    backend.call("generate", prompts=["a person hops on one leg"], frames=[16], seed=1, steps=2)
    assert backend.call("load", prompts=["a person hops on one leg", "a person bows"])["encoded"] == 1
    events, final = backend.wait(backend.send("load", prompts=["fine", 3]))
    assert final["type"] == "error" and final["error"]["code"] == "bad_input"


def test_a_primed_backend_generates_exactly_what_an_unprimed_one_does(backend, tiny_weights, tmp_path):
    """The warm-up's `prime` (a throwaway generation after a fresh load) changes no later result."""
    primed = Backend.serve(tiny_weights, tmp_path / "primed.log")
    try:
        data = primed.call("load", prompts=["a person spins"], prime=True)
        assert data["timings"]["prime"] > 0 and data["encoded"] == 1
        assert primed.call("load", prime=True)["timings"]["prime"] == 0.0  # once, after a fresh load
        request = {"prompts": ["a person spins"], "frames": [24], "seed": 9, "steps": 3}
        after_prime = primed.call("generate", **request)["takes"][0]["joints"]
    finally:
        primed.close()
    assert np.array_equal(after_prime, backend.call("generate", **request)["takes"][0]["joints"])
