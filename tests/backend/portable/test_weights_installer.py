"""The weights installer against a loopback HTTP server serving a synthetic official-layout zip
(``weights_server.py``: the server, its faults, and the test-only manifest that stands in for the
official one)."""

from __future__ import annotations

import io
import os
import socket
import zipfile
from pathlib import Path

import pytest

from backend.portable import weights_installer as wi
from backend.portable.errors import CheckpointError
from tests.backend.portable.weights_server import (
    CLIP_BYTES,
    MEMBERS,
    FileServer,
    make_zip,
    member_bytes,
    test_manifest,
)

TEST_ARCHIVE, TEST_CLIP = test_manifest(wi)


@pytest.fixture
def server():
    srv = FileServer()
    srv.files["/humanml3d_models.zip"] = make_zip()
    srv.files["/ViT-B-32.pt"] = CLIP_BYTES
    yield srv
    srv.close()


def install(root: Path, srv: FileServer, **kwargs):
    kwargs.setdefault("backoff", 0.0)
    kwargs.setdefault("progress", io.StringIO())
    kwargs.setdefault("log", lambda msg: None)
    return wi.install(root, ("t2m",), base_url=srv.url, archives={"t2m": TEST_ARCHIVE}, clip_file=TEST_CLIP,
                      **kwargs)


def assert_installed(root: Path, seed: int = 0) -> None:
    for rel in MEMBERS:
        if MEMBERS[rel] is not None:
            assert (root / "t2m" / rel).read_bytes() == member_bytes(rel, seed), rel
        else:
            assert (root / "t2m" / rel).is_file()
    assert (root / "clip" / "ViT-B-32.pt").read_bytes() == CLIP_BYTES


def leftovers(root: Path) -> list[str]:
    """Anything in the weights root that is not a finished install (staging folders, downloads)."""
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("prefix", ["checkpoints/t2m/", "t2m/", ""])
def test_install_downloads_verifies_and_installs_any_top_folder(tmp_path, server, prefix):
    server.files["/humanml3d_models.zip"] = make_zip(prefix)
    progress = io.StringIO()
    installed = install(tmp_path, server, progress=progress)

    assert installed == [tmp_path / "t2m", tmp_path / "clip" / "ViT-B-32.pt"]
    assert_installed(tmp_path)
    assert leftovers(tmp_path) == []
    assert "%" in progress.getvalue() and "MB/s" in progress.getvalue()
    if prefix:
        assert not (tmp_path / "t2m" / "README.txt").exists()  # files outside the dataset folder stay out


def test_second_run_skips_verified_install(tmp_path, server):
    install(tmp_path, server)
    server.requests.clear()
    install(tmp_path, server)
    assert server.requests == []
    assert_installed(tmp_path)


def test_drive_confirmation_page_is_followed(tmp_path, server):
    server.confirm_page.add("/humanml3d_models.zip")
    install(tmp_path, server)
    assert_installed(tmp_path)
    zip_requests = [p for p, _ in server.requests if p == "/humanml3d_models.zip"]
    assert len(zip_requests) == 2


def test_interrupted_transfer_resumes_with_range(tmp_path, server):
    size = len(server.files["/humanml3d_models.zip"])
    server.drop_once["/humanml3d_models.zip"] = size // 2
    install(tmp_path, server)

    ranges = [r for p, r in server.requests if p == "/humanml3d_models.zip"]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={size // 2}-"
    assert_installed(tmp_path)
    assert leftovers(tmp_path) == []


def test_interrupted_run_keeps_partial_download_and_next_run_resumes(tmp_path, server):
    size = len(server.files["/humanml3d_models.zip"])
    server.drop_once["/humanml3d_models.zip"] = size // 3
    with pytest.raises(wi.DownloadError, match="resumes where it stopped"):
        install(tmp_path, server, retries=0)
    assert not (tmp_path / "t2m").exists()
    part = tmp_path / ".downloads" / "humanml3d_models.zip.part"
    assert part.stat().st_size == size // 3

    install(tmp_path, server)
    assert ("/humanml3d_models.zip", f"bytes={size // 3}-") in server.requests
    assert_installed(tmp_path)
    assert leftovers(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    server.ignore_range = True
    server.drop_once["/humanml3d_models.zip"] = 1000
    install(tmp_path, server)
    assert_installed(tmp_path)


def test_server_that_never_finishes_gives_up_and_keeps_the_partial_file(tmp_path, server):
    server.ignore_range = True
    server.drop_always["/humanml3d_models.zip"] = 1000
    with pytest.raises(wi.DownloadError, match="kept failing"):
        install(tmp_path, server, retries=2)
    assert len([p for p, _ in server.requests if p == "/humanml3d_models.zip"]) == 3
    assert not (tmp_path / "t2m").exists()


def flip_byte_inside_member(data: bytes, rel: str, seed: int) -> bytes:
    """Corrupt one byte of a stored member's payload (its CRC no longer matches)."""
    payload = member_bytes(rel, seed)
    at = data.index(payload[:64]) + len(payload) // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("corruption, message", [
    ("not_a_zip", "cannot be opened as a zip"),
    ("crc", "is corrupt"),
    ("wrong_size", "official file is 30,000"),
    ("same_size_other_bytes", "trans_test/model/latest.tar has sha256"),
    ("missing_member", "trans_test/model/latest.tar is missing"),
    ("clip_sha", "sha256"),
])
def test_corrupted_download_fails_clearly_and_leaves_previous_install_untouched(
        tmp_path, server, corruption, message):
    install(tmp_path, server)                       # a good install (seed 0) to protect
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    good = make_zip()
    bad = {
        "not_a_zip": b"<html>quota exceeded</html>" + good[:5000],
        "crc": flip_byte_inside_member(make_zip(seed=1), "trans_test/model/latest.tar", seed=1),
        "wrong_size": make_zip(seed=1, override={"rvq_test/model/net_best_fid.tar": b"x" * 29_999}),
        "same_size_other_bytes": make_zip(override={"trans_test/model/latest.tar": b"x" * 50_000}),
        "missing_member": make_zip(seed=1).replace(b"trans_test/model/latest.tar",
                                                   b"trans_test/model/oldest.tar"),
        "clip_sha": None,
    }[corruption]
    if bad is None:
        server.files["/ViT-B-32.pt"] = CLIP_BYTES[:-1] + b"?"
    else:
        server.files["/humanml3d_models.zip"] = bad

    with pytest.raises(CheckpointError, match=message) as err:
        install(tmp_path, server, force=True)
    assert err.value.fix
    if corruption != "clip_sha":
        assert "official byte size" in err.value.problem
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert leftovers(tmp_path) == []


def test_corrupted_first_install_leaves_no_folder(tmp_path, server):
    server.files["/humanml3d_models.zip"] = make_zip(override={"rvq_test/meta/mean.npy": b"short"})
    with pytest.raises(CheckpointError, match="mean.npy"):
        install(tmp_path, server)
    assert not (tmp_path / "t2m").exists()
    assert not (tmp_path / "clip").exists()
    assert leftovers(tmp_path) == []


def test_interrupt_during_extraction_leaves_previous_install(tmp_path, server, monkeypatch):
    install(tmp_path, server)
    before = (tmp_path / "t2m" / "trans_test" / "model" / "latest.tar").read_bytes()
    server.files["/humanml3d_models.zip"] = make_zip(seed=2)
    calls = []

    def copy_then_interrupt(src, dst, length=0):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        dst.write(src.read())

    monkeypatch.setattr(wi.shutil, "copyfileobj", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        install(tmp_path, server, force=True)
    assert (tmp_path / "t2m" / "trans_test" / "model" / "latest.tar").read_bytes() == before
    assert [p for p in leftovers(tmp_path) if p != ".downloads"] == []


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def test_unreachable_host_explains_manual_steps(tmp_path):
    with pytest.raises(wi.NetworkUnavailableError) as err:
        wi.install(tmp_path, ("t2m",), base_url=closed_port_url(), backoff=0, progress=None,
                   log=lambda m: None)
    text = str(err.value)
    assert "Cannot reach 127.0.0.1" in text
    assert wi.HUMANML3D.browser_url in text and wi.CLIP_VIT_B32.url in text
    assert "python build.py weights --from-zip PATH/humanml3d_models.zip --from-zip PATH/ViT-B-32.pt" in text
    assert not (tmp_path / "t2m").exists()
    assert leftovers(tmp_path) == []


def test_cli_reports_offline_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(wi.BASE_URL_ENV, closed_port_url())
    assert wi.main(["--dir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "The weights were NOT installed" in err and "Cannot reach" in err
    assert "--from-zip" in err and "Traceback" not in err
    assert not (tmp_path / "w" / "t2m").exists()


def test_from_zip_installs_user_downloaded_files(tmp_path):
    zip_path = tmp_path / "downloads" / "humanml3d_models.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(make_zip("t2m/"))
    clip_path = tmp_path / "downloads" / "ViT-B-32.pt"
    clip_path.write_bytes(CLIP_BYTES)
    root = tmp_path / "weights"

    wi.install_from_files(root, [zip_path, clip_path], archives={"t2m": TEST_ARCHIVE}, clip_file=TEST_CLIP,
                          log=lambda m: None)
    assert_installed(root)
    assert zip_path.exists() and clip_path.exists()   # the user's own files are not consumed
    assert leftovers(root) == []


def test_from_zip_rejects_unknown_zip_and_wrong_clip(tmp_path, capsys):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something/else.txt", "hi")
    with pytest.raises(CheckpointError, match="none of the official model folders"):
        wi.install_from_files(tmp_path / "w", [other], archives={"t2m": TEST_ARCHIVE}, log=lambda m: None)

    fake_clip = tmp_path / "ViT-B-32.pt"
    fake_clip.write_bytes(b"not clip")
    assert wi.main(["--dir", str(tmp_path / "w"), "--from-zip", str(fake_clip)]) == 1
    assert "sha256" in capsys.readouterr().err
    assert not (tmp_path / "w" / "clip" / "ViT-B-32.pt").exists()


def test_missing_files_lists_what_the_backend_needs(tmp_path):
    missing = wi.missing_files(tmp_path)
    assert "t2m/length_estimator/model/finest.tar" in missing and "clip/ViT-B-32.pt" in missing
    for rel in missing:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert wi.missing_files(tmp_path) == []


def test_installer_imports_by_file_path_without_the_package(tmp_path):
    """The add-on loads it by path (errors.py first, as client.load_backend_module does): it must not
    need `backend` on sys.path, nor pull in torch."""
    import subprocess
    import sys

    portable = Path(wi.__file__).parent
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')]\n"
            "def load(name, file):\n"
            "    spec = importlib.util.spec_from_file_location(name, file)\n"
            "    m = importlib.util.module_from_spec(spec); sys.modules[name] = m\n"
            "    spec.loader.exec_module(m)\n"
            "    return m\n"
            f"load('_momask_blender_backend_errors', {str(portable / 'errors.py')!r})\n"
            f"m = load('wi', {str(portable / 'weights_installer.py')!r})\n"
            "assert 'torch' not in sys.modules and 'backend' not in sys.modules; print(m.HUMANML3D.filename)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=True)
    assert out.stdout.strip() == "humanml3d_models.zip"


def test_leftovers_of_a_killed_installer_are_repaired(tmp_path, server):
    """Killed mid-swap: the old install set aside, a half-extracted folder. The next run fixes both."""
    install(tmp_path, server)
    os.replace(tmp_path / "t2m", tmp_path / ".t2m.previous-999")
    (tmp_path / ".t2m.installing-abc" / "rvq_test").mkdir(parents=True)
    server.requests.clear()

    install(tmp_path, server)
    assert server.requests == []          # the old install was put back and verified, nothing downloaded
    assert_installed(tmp_path)
    assert leftovers(tmp_path) == []


def test_complete_part_file_is_used_when_server_says_range_not_satisfiable(tmp_path, server):
    data = server.files["/humanml3d_models.zip"]
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / "humanml3d_models.zip.part").write_bytes(data)
    install(tmp_path, server)
    assert ("/humanml3d_models.zip", f"bytes={len(data)}-") in server.requests
    assert_installed(tmp_path)
    assert leftovers(tmp_path) == []


def test_official_digests_belong_to_official_members():
    for archive in wi.ARCHIVES.values():
        assert set(archive.checksums) <= {rel for rel, size in archive.members.items() if size}
        assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in archive.checksums.values())


def test_progress_steps_count_files_and_bytes_up_to_the_whole(tmp_path, server):
    """What the add-on's preferences draw: each file downloaded byte by byte up to its size, then
    verified, then installed, and the file count reaching the total."""
    steps: list[wi.Step] = []
    install(tmp_path, server, on_step=steps.append)
    zip_size = len(server.files["/humanml3d_models.zip"])
    assert (steps[0].filename, steps[0].files_done, steps[0].files_total) == ("humanml3d_models.zip", 0, 2)
    downloads = [s.done for s in steps if s.phase == "download" and s.filename == "humanml3d_models.zip"]
    assert downloads == sorted(downloads) and downloads[-1] == zip_size
    phases = [(s.filename, s.phase, s.files_done) for s in steps if s.phase != "download"]
    assert phases == [("humanml3d_models.zip", "verify", 0), ("humanml3d_models.zip", "installed", 1),
                      ("ViT-B-32.pt", "verify", 1), ("ViT-B-32.pt", "installed", 2)]
    assert steps[-1].files_done == steps[-1].files_total == 2


def test_cancel_mid_download_keeps_the_partial_and_the_next_run_resumes(tmp_path, server):
    server.slow = (4096, 0.005)
    seen: list[int] = []
    with pytest.raises(wi.Cancelled, match="Nothing was half-installed"):
        install(tmp_path, server, on_step=lambda s: seen.append(s.done),
                cancelled=lambda: bool(seen) and seen[-1] >= 20_000)
    part = tmp_path / ".downloads" / "humanml3d_models.zip.part"
    kept = part.stat().st_size
    assert 20_000 <= kept < len(server.files["/humanml3d_models.zip"])
    assert not (tmp_path / "t2m").exists() and not (tmp_path / "clip").exists()

    server.slow = None
    install(tmp_path, server)
    assert ("/humanml3d_models.zip", f"bytes={kept}-") in server.requests
    assert_installed(tmp_path)
    assert leftovers(tmp_path) == []


def test_cancel_while_verifying_keeps_the_whole_download_for_the_next_run(tmp_path, server):
    """A cancel during extraction deletes the staging folder; the complete download is not fetched again."""
    phases: list[str] = []
    with pytest.raises(wi.Cancelled):
        install(tmp_path, server, on_step=lambda s: phases.append(s.phase),
                cancelled=lambda: "verify" in phases)
    assert not (tmp_path / "t2m").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".t2m")] == []
    server.requests.clear()
    install(tmp_path, server)
    zip_size = len(server.files["/humanml3d_models.zip"])
    assert [r for p, r in server.requests if p == "/humanml3d_models.zip"] == [f"bytes={zip_size}-"]
    assert_installed(tmp_path)


def test_from_files_reports_steps_and_names_a_truncated_zip(tmp_path):
    zip_path, clip_path = tmp_path / "humanml3d_models.zip", tmp_path / "ViT-B-32.pt"
    zip_path.write_bytes(make_zip())
    clip_path.write_bytes(CLIP_BYTES)
    steps: list[wi.Step] = []
    wi.install_from_files(tmp_path / "w", [zip_path, clip_path], archives={"t2m": TEST_ARCHIVE},
                          clip_file=TEST_CLIP, log=lambda m: None, on_step=steps.append)
    assert [(s.phase, s.files_done, s.files_total) for s in steps] == [
        ("verify", 0, 2), ("installed", 1, 2), ("verify", 1, 2), ("installed", 2, 2)]
    assert_installed(tmp_path / "w")
    zip_path.write_bytes(make_zip()[:-100])
    with pytest.raises(CheckpointError, match="cannot be opened as a zip"):
        wi.install_from_files(tmp_path / "v", [zip_path], archives={"t2m": TEST_ARCHIVE}, log=lambda m: None)
    assert not (tmp_path / "v" / "t2m").exists()
