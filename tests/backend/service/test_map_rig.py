"""``map_rig`` against a live service (backend/service/usecases/map_rig.py)."""

from __future__ import annotations

from tests.backend.service.live import STUB_RIG, smpl_rig


def test_map_rig_works_without_models_and_names_missing_roles(backend):
    data = backend.call("map_rig", rig=smpl_rig())
    assert data["complete"] and data["missing"] == []
    assert data["mapping"]["bones"]["left_wrist"] == "left_wrist" and "pelvis" in data["report"]
    partial = backend.call("map_rig", rig=STUB_RIG)
    assert not partial["complete"] and "left_wrist" in partial["missing"]
