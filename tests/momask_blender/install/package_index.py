"""A package index on 127.0.0.1 for the Install Backend tests: PEP 503 "simple" pages over a
wheelhouse folder, served by http.server in the test's own process.

Two roots serve the same wheelhouse, as the real indexes would: ``/simple/`` (PyPI,
``MOMASK_PYPI_INDEX``) and ``/whl/<tag>/`` (PyTorch's index, ``MOMASK_TORCH_INDEX`` = ``/whl``), and
every request is recorded, so a test can tell which index served torch. ``slow`` throttles file
downloads (to cancel mid-download), ``mode`` makes project pages answer 404 or a page that is not an
index. ``stand_in_wheels`` builds small wheels with the pinned names and versions (torch, numpy,
scipy, openai-clip, ...: a module with a marker and a payload of random bytes), so the installer's
real requirement files are what the tests install.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

#: The modules each stand-in distribution provides (what the installer's check looks for).
STAND_IN_MODULES = {"torch": ["torch"], "numpy": ["numpy"], "scipy": ["scipy"], "openai-clip": ["clip"],
                    "pillow": ["PIL"], "setuptools": ["setuptools", "pkg_resources"]}
#: Where this machine keeps wheels pip can use without a download (docs: .library env notes); the
#: test falls back on `pip download` into its cache folder.
LOCAL_WHEEL_DIRS = (Path("/opt/pypi/files"), Path("/opt/pypi-more/files"), Path("/opt/wheels"))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(folder: Path, dist: str, version: str, modules: list[str], payload: int = 0) -> Path:
    """A pure-Python wheel ``dist==version`` whose modules say they are stand-ins, with ``payload``
    random bytes (incompressible: the download takes that many bytes)."""
    stem = f"{normalise(dist).replace('-', '_')}-{version}"
    path = folder / f"{stem}-py3-none-any.whl"
    info = f"{stem}.dist-info"
    files: dict[str, bytes] = {}
    for module in modules:
        files[f"{module}/__init__.py"] = (f"__version__ = {version!r}\n__momask_stand_in__ = True\n").encode()
    if payload:
        files[f"{modules[0]}/payload.bin"] = os.urandom(payload)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: momask-tests\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n")
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def real_file(pattern: str, spec: str, cache: Path) -> Path:
    """A real distribution file (e.g. pip's wheel) from this machine's wheel folders, or downloaded
    once into ``cache`` with pip."""
    for folder in (cache, *LOCAL_WHEEL_DIRS):
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(cache), spec],
                   check=True, capture_output=True, timeout=600)
    return sorted(cache.glob(pattern))[-1]


def stand_in_wheels(folder: Path, pins: list[tuple[str, str]], cache: Path, torch_payload: int = 0) -> Path:
    """The wheelhouse for ``pins`` [(name, version)]: pip's real wheel, a stand-in for each other pin."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in pins:
        if name == "pip":
            shutil.copy2(real_file(f"pip-{version}-py3-none-any.whl", f"pip=={version}", cache), folder)
        else:
            build_wheel(folder, name, version, STAND_IN_MODULES.get(name, [name.replace("-", "_")]),
                        payload=torch_payload if name == "torch" else 0)
    return folder


def real_wheelhouse(folder: Path, specs: list[str], cache: Path) -> Path:
    """The real distributions of ``specs`` and their dependencies (torch's CPU wheel included), from
    pip's download into ``cache`` (kept between runs: a few hundred MB, fetched once)."""
    folder.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / ("downloaded-" + hashlib.sha256(" ".join(specs).encode()).hexdigest()[:12])
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--dest", str(cache), *specs],
                       check=True, capture_output=True, timeout=1200)
        stamp.write_text(" ".join(specs))
    for path in cache.iterdir():
        if path.name.endswith((".whl", ".tar.gz", ".zip")):
            target = folder / path.name
            if target.exists():
                continue
            if path.stat().st_dev == folder.stat().st_dev:
                os.link(path, target)
            else:
                shutil.copy2(path, target)
    return folder


def project_of(filename: str) -> str:
    """The normalised project a distribution file belongs to (``openai_clip-1.0.1.tar.gz`` ->
    ``openai-clip``; ``torch-2.13.0+cpu-cp311-...whl`` -> ``torch``)."""
    if filename.endswith(".whl"):
        return normalise(filename.split("-")[0])
    stem = re.sub(r"\.(tar\.gz|zip)$", "", filename)
    return normalise(stem.rsplit("-", 1)[0])


class PackageIndex:
    """The loopback index; ``url`` (``http://127.0.0.1:PORT``), ``pypi`` and ``torch_base`` for the
    installer's environment variables. ``requests`` records (path, seconds since start)."""

    def __init__(self, wheelhouse: Path) -> None:
        self.wheelhouse = wheelhouse
        self.requests: list[str] = []
        self.connections = 0
        self.slow: tuple[int, float] | None = None  # (chunk bytes, seconds between chunks)
        self.mode = "ok"  # "ok", "404", "garbage"
        self.digests: dict[tuple[str, int], str] = {}
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                index.connections += 1
                super().setup()

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                index.requests.append(self.path)
                path = self.path.split("?")[0]
                match = re.match(r"^/(?:simple|whl/[^/]+)/(?:([^/]+)/)?$", path)
                if match:
                    return self.page(match.group(1))
                if path.startswith("/files/"):
                    return self.file(urllib.parse.unquote(path[len("/files/"):]))
                self.answer(404, b"not found")

            def page(self, project: str | None) -> None:
                if index.mode == "404" and project:
                    return self.answer(404, b"<html><body>404 Not Found</body></html>")
                if index.mode == "garbage" and project:
                    return self.answer(200, b"<html><body><h1>Welcome to the hotel Wi-Fi</h1></body></html>")
                files = sorted(p.name for p in index.wheelhouse.iterdir())
                if project is None:
                    names = sorted({project_of(f) for f in files})
                    body = "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
                else:
                    mine = [f for f in files if project_of(f) == normalise(project)]
                    if not mine:
                        return self.answer(404, b"no such project")
                    body = "".join(
                        f'<a href="/files/{urllib.parse.quote(f)}#sha256={self.digest(f)}">{f}</a>\n'
                        for f in mine)
                self.answer(200, f"<!DOCTYPE html><html><body>\n{body}</body></html>".encode())

            def digest(self, name: str) -> str:
                path = index.wheelhouse / name
                key = (str(path), path.stat().st_mtime_ns)
                if key not in index.digests:
                    index.digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
                return index.digests[key]

            def file(self, name: str) -> None:
                path = index.wheelhouse / name
                if "/" in name or not path.is_file():
                    return self.answer(404, b"no such file")
                size = path.stat().st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with open(path, "rb") as handle:
                    while True:
                        slow = index.slow
                        chunk = handle.read(slow[0] if slow else 1 << 20)
                        if not chunk:
                            break
                        try:
                            self.wfile.write(chunk)
                        except OSError:
                            return
                        if slow:
                            time.sleep(slow[1])

            def answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.pypi = f"{self.url}/simple"
        self.torch_base = f"{self.url}/whl"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
