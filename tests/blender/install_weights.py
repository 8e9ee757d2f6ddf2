"""Install Weights from the add-on's preferences, in real Blender, through its operators.

Run by tests/momask_blender/install/test_install_weights.py: ``<bpy python> install_weights.py OUT.json``.
A loopback HTTP server in this process (tests/backend/portable/weights_server.py) serves a zip of
random weights in the official layout and a CLIP file; the installer is pointed at it with
``MOMASK_WEIGHTS_BASE_URL`` and given the matching test manifest (the official files are 550 MB, with
official digests). Timers never fire in background Blender, so the script pumps ``jobs.pump()``
itself, as the UI's timer would, and measures how long the main thread is kept from running.

What a user would notice: the progress moves forward file by file up to 100 % and the add-on then
finds the weights by itself; Cancel stops the download at once, installs nothing, and the next
Install resumes; with online access off nothing is downloaded (no connection at all) and From File...
still works; a corrupt zip, a 404, a folder that cannot be written: a message with the fix, nothing
installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("MOMASK_USER_DIR", tempfile.mkdtemp(prefix="momask_user_"))

import bpy  # noqa: E402  (bpy first: it puts addon_utils on the path)

# isort: split
import addon_utils  # noqa: E402
from cases import MADE, case, check, finish, made  # noqa: E402

from tests.backend.portable.weights_server import (  # noqa: E402
    CLIP_BYTES,
    MEMBERS,
    FileServer,
    make_zip,
    member_bytes,
    test_manifest,
)
from tests.momask_blender.install.prefs_ui import drawn as drawn_by  # noqa: E402
from tests.momask_blender.install.prefs_ui import refused

TMP = Path(tempfile.mkdtemp(prefix="momask_weights_"))
USER_DIR = Path(os.environ["MOMASK_USER_DIR"])

addon_utils.enable("momask_blender", default_set=True, handle_error=None)
from momask_blender.install import weights  # noqa: E402
from momask_blender.remote import client, jobs  # noqa: E402
from momask_blender.ui import preferences  # noqa: E402

ARCHIVE, CLIP = test_manifest(weights.installer)
weights.installer.ARCHIVES = {"t2m": ARCHIVE}
weights.installer.CLIP_VIT_B32 = CLIP
SERVER = FileServer()
ZIP = make_zip()
SERVER.files = {"/humanml3d_models.zip": ZIP, "/ViT-B-32.pt": CLIP_BYTES}
os.environ[weights.installer.BASE_URL_ENV] = SERVER.url


def prefs():
    return bpy.context.preferences.addons["momask_blender"].preferences


def set_online(on: bool) -> None:
    bpy.context.preferences.system.use_online_access = on
    check(bpy.app.online_access is on, f"bpy.app.online_access stayed {bpy.app.online_access}")


def use_folder(name: str) -> Path:
    root = TMP / name
    prefs().weights_dir = str(root)
    return root


def follow(timeout: float = 60.0) -> dict:
    """Pump as the UI's timer does until the install is over; the steps seen, and the longest time the
    main thread waited beyond its 5 ms sleep (what a user would feel as a stall)."""
    job = weights.CURRENT
    check(job is not None, "no install was started")
    steps, fractions, worst = [], [], 0.0
    deadline = time.monotonic() + timeout
    last = time.perf_counter()
    while True:
        running = jobs.pump()
        weights.missing(job.root)  # what the preferences draw each redraw
        step = job.step
        if step is not None and (not steps or steps[-1] != step):
            steps.append(step)
            fractions.append(job.fraction)
        time.sleep(0.005)
        now = time.perf_counter()
        worst, last = max(worst, now - last - 0.005), now
        if not running and not job.running:
            break
        check(time.monotonic() < deadline, f"the install still runs after {timeout:g} s: {job.text}")
    return {"job": job, "steps": steps, "fractions": fractions, "stall_ms": worst * 1000.0}


def assert_installed(root: Path) -> None:
    for rel, size in MEMBERS.items():
        path = root / "t2m" / rel
        check(path.is_file(), f"{path} was not installed")
        if size is not None:
            check(path.read_bytes() == member_bytes(rel), f"{path} differs from the served file")
    check((root / "clip" / "ViT-B-32.pt").read_bytes() == CLIP_BYTES, "CLIP was not installed")


def nothing_installed(root: Path) -> None:
    check(not (root / "t2m").exists() and not (root / "clip").exists(),
          f"something was installed in {root}: {sorted(p.name for p in root.iterdir())}")
    check(not [p for p in root.glob(".*") if ".installing-" in p.name], "a staging folder was left behind")


def drawn(root: Path) -> str:
    return drawn_by(preferences.draw_weights, str(root))


set_online(True)


@case
def case_install_downloads_with_progress_and_the_addon_uses_it():
    prefs().weights_dir = ""
    if (Path(client.backend_root() or "/nonexistent") / "weights" / "t2m").is_dir():
        use_folder("default")  # a development checkout with weights: never install into it
    root = Path(preferences.client_config().weights)
    if not prefs().weights_dir:
        check(root == USER_DIR / "weights", f"the default weights folder is {root}, not the user folder's")
    check("missing" in drawn(root), "the Weights box does not say the weights are missing")
    # about 0.6 s in all, CLIP 0.2 s: polls see the bytes arrive, as a user would, even on a loaded machine
    SERVER.slow = (4096, 0.02)
    try:
        check(bpy.ops.momask.install_weights() == {"FINISHED"}, "Install Weights did not start")
        run = follow()
    finally:
        SERVER.slow = None
    job, steps = run["job"], run["steps"]
    check(job.state == "done", f"the install ended {job.state}: {job.error}")
    assert_installed(root)
    check(run["fractions"] == sorted(run["fractions"]), f"the progress went back: {run['fractions']}")
    check(job.fraction == 1.0, f"the progress ended at {job.fraction}")
    for name, size in (("humanml3d_models.zip", len(ZIP)), ("ViT-B-32.pt", len(CLIP_BYTES))):
        done = [s.done for s in steps if s.filename == name and s.phase == "download"]
        # (polled as the UI polls it: the last chunk may be overtaken by "verify" between two polls)
        check(len(done) >= 2 and done == sorted(done) and done[-1] <= size,
              f"{name}'s bytes went {done}, size {size}")
    order = [(s.filename, s.phase) for i, s in enumerate(steps)
             if i == 0 or (s.filename, s.phase) != (steps[i - 1].filename, steps[i - 1].phase)]
    expected = iter([(name, phase) for name in ("humanml3d_models.zip", "ViT-B-32.pt")
                     for phase in ("download", "verify", "installed")])
    check(all(seen in expected for seen in order), f"steps out of order: {order}")  # (a subsequence)
    check(("ViT-B-32.pt", "installed") in order, f"the last file was never shown installed: {order}")
    check((steps[-1].files_done, steps[-1].files_total) == (2, 2), f"files {steps[-1]}")
    check(not (root / ".downloads").exists(), "the downloads folder was left behind")
    check(Path(preferences.client_config().weights) == root, "the add-on does not use the installed weights")
    shown = drawn(root)
    check("missing" not in shown and "[CHECKMARK] Installed" in shown, f"the Weights box shows\n{shown}")
    SERVER.requests.clear()
    bpy.ops.momask.install_weights()
    again = follow()["job"]
    check(again.state == "done" and not again.installed and SERVER.requests == [],
          f"a second Install fetched {SERVER.requests} ({again.text})")
    return {"steps": len(steps), "main_thread_stall_ms": run["stall_ms"], "seconds": job.seconds}


@case
def case_cancel_mid_download_installs_nothing_and_install_resumes():
    root = use_folder("cancel")
    SERVER.slow = (2048, 0.01)  # the zip takes about half a second
    try:
        bpy.ops.momask.install_weights()
        job = weights.CURRENT
        check(client.wait_for(lambda: job.step is not None and job.step.done >= 16_384, 20.0),
              f"the download did not progress: {job.text}")
        asked = time.monotonic()
        check(bpy.ops.momask.cancel_weights_install() == {"FINISHED"}, "Cancel was not available")
        run = follow()
        latency = time.monotonic() - asked
    finally:
        SERVER.slow = None
    check(job.state == "cancelled", f"the install ended {job.state}: {job.error}")
    nothing_installed(root)
    part = root / ".downloads" / "humanml3d_models.zip.part"
    check(part.is_file(), "the partial download was not kept for resuming")
    kept = part.stat().st_size
    check(16_384 <= kept < len(ZIP), f"{kept} bytes kept of {len(ZIP)}")
    check("Cancelled" in drawn(root), "the Weights box does not say it was cancelled")
    SERVER.requests.clear()
    bpy.ops.momask.install_weights()
    resumed = follow()["job"]
    check(resumed.state == "done", f"the second Install ended {resumed.state}: {resumed.error}")
    check(("/humanml3d_models.zip", f"bytes={kept}-") in SERVER.requests, f"no resume: {SERVER.requests}")
    assert_installed(root)
    return {"cancel_seconds": latency, "kept_bytes": kept, "main_thread_stall_ms": run["stall_ms"]}


@case
def case_online_access_off_refuses_without_a_connection():
    root = use_folder("offline")
    set_online(False)
    before = SERVER.connections
    message = refused(lambda: bpy.ops.momask.install_weights())
    time.sleep(0.3)
    check("online access is off" in message and "Allow Online Access" in message and "From File" in message,
          f"the refusal says: {message}")
    check(SERVER.connections == before, f"{SERVER.connections - before} connection(s) reached the server")
    check(not root.exists() or not any(root.iterdir()), "files were written while offline")
    shown = drawn(root)
    check("Allow Online Access" in shown and "Online access is off" in shown,
          f"the Weights box shows\n{shown}")
    return {"connections": SERVER.connections - before}


@case
def case_from_file_installs_the_zip_and_the_clip_file_offline():
    root = use_folder("from_file")
    check(not bpy.app.online_access, "online access should still be off")
    downloads = TMP / "downloaded"
    downloads.mkdir()
    (downloads / "humanml3d_models.zip").write_bytes(ZIP)
    (downloads / "ViT-B-32.pt").write_bytes(CLIP_BYTES)
    before = SERVER.connections
    bpy.ops.momask.install_weights_from_file(directory=str(downloads),
                                             files=[{"name": "humanml3d_models.zip"}])
    job = follow()["job"]
    check(job.state == "done" and (root / "t2m").is_dir(), f"the zip: {job.state} {job.error}")
    bpy.ops.momask.install_weights_from_file(filepath=str(downloads / "ViT-B-32.pt"))
    job = follow()["job"]
    check(job.state == "done", f"the CLIP file: {job.state} {job.error}")
    assert_installed(root)
    check((downloads / "ViT-B-32.pt").is_file(), "the user's own file was moved or deleted")
    check(SERVER.connections == before, "From File... opened a connection")
    check(not any(weights.missing(root).values()), f"still missing {weights.missing(root)}")
    MADE["downloads"] = downloads
    return {}



@case
def case_corrupt_zip_and_404_give_the_fix_and_install_nothing():
    (downloads,) = made("downloads")
    root = use_folder("corrupt")
    truncated = downloads / "truncated" / "humanml3d_models.zip"
    truncated.parent.mkdir()
    truncated.write_bytes(ZIP[: len(ZIP) // 2])
    bpy.ops.momask.install_weights_from_file(filepath=str(truncated))
    job = follow()["job"]
    check(job.state == "failed" and job.error and "cannot be opened as a zip" in job.error[0]
          and job.error[1], f"a truncated zip: {job.state} {job.error}")
    check("Fix:" in drawn(root), "the Weights box shows no fix")
    nothing_installed(root)

    set_online(True)
    del SERVER.files["/humanml3d_models.zip"]
    try:
        bpy.ops.momask.install_weights()
        job = follow()["job"]
    finally:
        SERVER.files["/humanml3d_models.zip"] = ZIP
    check(job.state == "failed" and job.error and "HTTP 404" in job.error[0] and job.error[1],
          f"a 404: {job.state} {job.error}")
    nothing_installed(root)
    check(not (root / ".downloads").exists(), "a 404 left a downloads folder")
    return {"problem_404": job.error[0] if job.error else ""}


@case
def case_unwritable_folder_gives_the_fix():
    if os.geteuid() == 0:  # root writes through permissions; /sys refuses even root (EPERM)
        root = Path("/sys/momask_weights_test")
        prefs().weights_dir = str(root)
    else:
        locked = TMP / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        root = locked / "weights"
        prefs().weights_dir = str(root)
    try:
        message = refused(lambda: bpy.ops.momask.install_weights())
    finally:
        if os.geteuid() != 0:
            os.chmod(TMP / "locked", 0o755)
    check("cannot write to the weights folder" in message and "Weights Folder you can write to" in message,
          f"the refusal says: {message}")
    check("cannot write" in drawn(root), "the Weights box does not say why")
    return {}


SERVER.close()
shutil.rmtree(TMP, ignore_errors=True)
finish()
