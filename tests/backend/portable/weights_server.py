"""A loopback HTTP server for the weights installer's tests, and a small manifest in the official
layout that stands in for the official one (random files of known sizes and sha256).

Not a test: ``test_weights_installer.py`` (plain Python) and ``tests/blender/install_weights.py``
(inside Blender, through the add-on's operators) both use it, so it imports only the standard library
and takes the installer module it builds the manifest for (the add-on loads its own copy by path).

The server supports Range requests, can drop a connection halfway, can ignore Range, can answer with
a Google-Drive-style confirmation page, can serve slowly, and records every request so the tests can
see resumes (and that no request was made at all).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import random
import socket
import threading
import time
import types
import urllib.parse
import zipfile

MEMBERS = {
    "rvq_test/model/net_best_fid.tar": 30_000,
    "rvq_test/meta/mean.npy": 200,
    "rvq_test/opt.txt": None,
    "trans_test/model/latest.tar": 50_000,
}
CLIP_BYTES = random.Random("clip").randbytes(40_000)


def member_bytes(rel: str, seed: int = 0) -> bytes:
    size = MEMBERS[rel] or 57
    return random.Random(f"{rel}-{seed}").randbytes(size)


def test_manifest(wi: types.ModuleType) -> tuple:
    """(archive, clip file) like the official ones, made with ``wi``'s own types: sizes for every
    model file, sha256 digests where they are known."""
    archive = wi.CheckpointArchive(
        dataset="t2m", filename="humanml3d_models.zip", drive_id="test-drive-id", members=MEMBERS,
        description="test HumanML3D models",
        checksums={rel: hashlib.sha256(member_bytes(rel)).hexdigest()
                   for rel in ("rvq_test/model/net_best_fid.tar", "trans_test/model/latest.tar")})
    clip = wi.ClipFile(filename="ViT-B-32.pt", url="http://unused.invalid/ViT-B-32.pt",
                       sha256=hashlib.sha256(CLIP_BYTES).hexdigest())
    return archive, clip


test_manifest.__test__ = False  # type: ignore[attr-defined]  (pytest: a helper, not a test)


def make_zip(prefix: str = "checkpoints/t2m/", seed: int = 0,
             override: dict[str, bytes] | None = None) -> bytes:
    """An official-layout zip; stored (not deflated) so the payload is large enough to interrupt."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("README.txt", "a file next to the dataset folder")
        for rel in MEMBERS:
            zf.writestr(prefix + rel, (override or {}).get(rel, member_bytes(rel, seed)))
    return buf.getvalue()


class FileServer:
    """A threaded http.server on 127.0.0.1 with Range support and fault injection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_once: dict[str, int] = {}     # path -> bytes sent before the connection is cut (once)
        self.drop_always: dict[str, int] = {}   # the same, on every request
        self.confirm_page: set[str] = set()     # paths answered first with a Drive confirmation page
        self.ignore_range = False
        self.slow: tuple[int, float] | None = None  # (bytes per write, seconds between writes)
        self.requests: list[tuple[str, str | None]] = []   # (path, Range header)
        self.connections = 0  # TCP connections accepted, a request sent or not
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                path, query = url.path, urllib.parse.parse_qs(url.query)
                server.requests.append((path, self.headers.get("Range")))
                if path not in server.files:
                    self.send_error(404)
                    return
                if path in server.confirm_page and "confirm" not in query:
                    page = (f'<html><body>Google Drive can\'t scan this file for viruses.'
                            f'<form id="download-form" action="{path}" method="get">'
                            f'<input type="hidden" name="confirm" value="t">'
                            f'<input type="hidden" name="uuid" value="1234"></form></body></html>').encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                data = server.files[path]
                start = 0
                range_header = self.headers.get("Range")
                if range_header and not server.ignore_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop_once.pop(path, None) or server.drop_always.get(path)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if server.slow is None:
                    self.wfile.write(body)
                    return
                size, pause = server.slow
                try:
                    for offset in range(0, len(body), size):
                        self.wfile.write(body[offset:offset + size])
                        self.wfile.flush()
                        time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (a cancel)
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
