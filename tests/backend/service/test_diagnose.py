"""``diagnose`` against a live service (backend/service/usecases/diagnose.py)."""

from __future__ import annotations


def test_diagnose_lists_every_check_and_a_fix_for_each_failure(backend, tiny_weights, tmp_path):
    data = backend.call("diagnose")
    names = [c["name"] for c in data["checks"]]
    assert data["ok"] is True, [c for c in data["checks"] if not c["ok"]]
    for name in ("Python", "PyTorch", "Device", "NumPy", "SciPy", "CLIP package", "CLIP weights"):
        assert name in names
    assert sum(n.startswith("Weights: ") for n in names) == 8       # every official file, one by one

    from backend import doctor

    empty = tmp_path / "empty"
    (empty / "t2m").mkdir(parents=True)
    report = doctor.diagnose(empty, clip=tmp_path / "nowhere.pt", device="cuda:7")
    failed = {c["name"]: c for c in report["checks"] if not c["ok"] and not c["optional"]}
    assert not report["ok"]
    assert "Device" in failed and "CLIP weights" in failed
    assert sum(n.startswith("Weights: ") for n in failed) == 8
    assert all(c["fix"] for c in failed.values())
    assert "FAIL" in doctor.format_report(report) and "Fix:" in doctor.format_report(report)
