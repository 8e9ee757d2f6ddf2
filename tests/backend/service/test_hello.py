"""``hello`` against a live service (backend/service/usecases/hello.py)."""

from __future__ import annotations

from backend.portable import protocol
from tests.backend.service.live import Backend


def test_hello_answers_before_any_model_is_loaded(tiny_weights, tmp_path):
    backend = Backend.serve(tiny_weights, tmp_path / "backend.log")
    try:
        check_hello(backend, tiny_weights)
    finally:
        backend.close()


def check_hello(backend, tiny_weights) -> None:
    """Versions, device and weights are reported, and nothing is loaded for it."""
    data = backend.call("hello", protocol=protocol.PROTOCOL_VERSION, client="tests")
    assert data["protocol"] == protocol.PROTOCOL_VERSION
    assert data["weights"] == {"root": str(tiny_weights), "found": True, "missing": [], "loaded": False}
    assert data["torch"] and data["python"] and data["device"]["resolved"] == "cpu"
    assert data["clip"]["found"] and data["fps"] == 20.0
    mismatch = backend.wait(backend.send("hello", protocol=protocol.PROTOCOL_VERSION + 1))[1]
    assert mismatch["error"]["code"] == "protocol_mismatch"
