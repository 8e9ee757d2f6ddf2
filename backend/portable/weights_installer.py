"""Download, verify and install the official MoMask checkpoints and CLIP ViT-B/32. Stdlib only.

``build.py`` imports it before any virtual environment exists, and the add-on loads it by file path
(``momask_blender/remote/client.py::load_backend_module``, which loads its sibling ``errors.py`` first),
so it imports nothing from the project but ``errors.py``.

What gets installed, under a weights root (default ``weights/``), in the official layout::

    <root>/t2m/<model folders>   from humanml3d_models.zip (Google Drive, the official download script)
    <root>/kit/<model folders>   from kit_models.zip (optional)
    <root>/clip/ViT-B-32.pt      from the URL the openai ``clip`` package itself downloads

How it stays safe:

* CLIP is checked by its sha256, which is part of its official URL.
* The official MoMask zips publish no checksum. They are checked by what we do know: the zip is
  intact (the CRC of every member, checked while it is extracted), every model file the backend
  loads is present with the exact byte size of the official release (docs/model.md §7),
  and the model files match the sha256 of the official files (see ``HUMANML3D``).
* Downloads resume from a ``.part`` file with an HTTP Range request (and start over when a server
  ignores Range); transient failures are retried with backoff.
* A dataset folder is extracted into a hidden sibling folder, verified there, then renamed into place
  in one step; on any failure (Ctrl-C included) the sibling is deleted and a previous install is
  left exactly as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html.parser
import http.client
import http.cookiejar
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple
from zlib import error as zlib_error

try:
    from backend.portable.errors import CheckpointError
except ImportError:
    # Loaded by file path inside Blender: momask_blender/remote/client.py::load_backend_module loads
    # errors.py first, under this name (SHARED_BACKEND_MODULES), and never imports the backend package.
    CheckpointError = sys.modules["_momask_blender_backend_errors"].CheckpointError  # type: ignore[misc]

#: Points every download at a mirror serving the same file names (``<base>/humanml3d_models.zip``,
#: ``<base>/ViT-B-32.pt``); the tests use it for a loopback server.
BASE_URL_ENV = "MOMASK_WEIGHTS_BASE_URL"

GOOGLE_DRIVE_DOWNLOAD = "https://drive.google.com/uc?export=download&id={id}"
GOOGLE_DRIVE_PAGE = "https://drive.google.com/file/d/{id}/view"


# NamedTuple rather than dataclass: dataclasses look their module up in sys.modules, which a
# by-path loader does not always fill in.
class CheckpointArchive(NamedTuple):
    """One official checkpoint zip and what a correct copy of it contains.

    ``members`` maps a path relative to the dataset folder (``t2m/``) to its size in bytes, or to
    ``None`` where the size is not fixed (the small ``opt.txt`` files). ``checksums`` gives the
    sha256 of the members whose official digest is known.
    """

    dataset: str
    filename: str
    drive_id: str
    members: Mapping[str, int | None]
    description: str
    checksums: Mapping[str, str] = {}

    @property
    def official_url(self) -> str:
        return GOOGLE_DRIVE_DOWNLOAD.format(id=self.drive_id)

    @property
    def browser_url(self) -> str:
        return GOOGLE_DRIVE_PAGE.format(id=self.drive_id)

    @property
    def anchor(self) -> str:
        """The member used to find where the dataset folder starts inside the zip."""
        return next(path for path, size in self.members.items() if size is not None)


class ClipFile(NamedTuple):
    """The CLIP ViT-B/32 checkpoint; its sha256 is the folder name in its official URL."""

    filename: str
    url: str
    sha256: str
    description: str = "CLIP ViT-B/32 text encoder"


_T2M_VQ = "rvq_nq6_dc512_nc512_noshare_qdp0.2"
_T2M_MASKED = "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns"
_T2M_RESIDUAL = "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw"

#: Sizes from the official release (docs/model.md §7). The zips themselves publish no
#: checksum, but the model files inside them were mirrored with Git LFS (in the public fork
#: purva115/MomaskImplementation, whose LFS pointers record each file's sha256 and size — the sizes
#: agree with the official release): those digests are checked after extraction. The HumanML3D meta
#: files and length estimator have no published digest and are checked by size.
HUMANML3D = CheckpointArchive(
    dataset="t2m",
    filename="humanml3d_models.zip",
    drive_id="1vXS7SHJBgWPt59wupQ5UUzhFObrnGkQ0",
    description="MoMask HumanML3D models",
    members={
        f"{_T2M_VQ}/model/net_best_fid.tar": 84_070_519,
        f"{_T2M_VQ}/meta/mean.npy": 2232,
        f"{_T2M_VQ}/meta/std.npy": 2232,
        f"{_T2M_VQ}/opt.txt": None,
        f"{_T2M_MASKED}/model/latest.tar": 55_933_307,
        f"{_T2M_MASKED}/opt.txt": None,
        f"{_T2M_RESIDUAL}/model/net_best_fid.tar": 61_196_511,
        f"{_T2M_RESIDUAL}/opt.txt": None,
        "length_estimator/model/finest.tar": 1_745_581,
    },
    checksums={
        f"{_T2M_VQ}/model/net_best_fid.tar":
            "fd42f54df6d4ecf1226959b5a7de3f849a04e76bfb9d8dde0a588f98de180088",
        f"{_T2M_MASKED}/model/latest.tar": "80776600ae3398ca9cebe250b42fe3cd5c25d0b950fc8f57118673bec1ec860e",
        f"{_T2M_RESIDUAL}/model/net_best_fid.tar":
            "2541adf3b1028b27b95cbe2a6e7866b70dc171f2d08f96d4fb741c49ac010f8d",
    },
)

KIT = CheckpointArchive(
    dataset="kit",
    filename="kit_models.zip",
    drive_id="1FapdHNkxPouasVM8MWgg1f6sd_4Lua2q",
    description="MoMask KIT-ML models",
    members={
        f"{_T2M_VQ}_k/model/net_best_fid.tar": 83_922_999,
        f"{_T2M_VQ}_k/meta/mean.npy": 2136,
        f"{_T2M_VQ}_k/meta/std.npy": 2136,
        f"{_T2M_VQ}_k/opt.txt": None,
        f"{_T2M_MASKED}_k/model/latest.tar": 152_393_025,
        f"{_T2M_MASKED}_k/opt.txt": None,
        f"{_T2M_RESIDUAL}_k/model/net_best_fid.tar": 61_196_511,
        f"{_T2M_RESIDUAL}_k/opt.txt": None,
    },
    checksums={
        f"{_T2M_VQ}_k/model/net_best_fid.tar":
            "3bc27652b71fb318b41475f3a70e9863ff1d327d3a68d20ee196a42ed60df6f0",
        f"{_T2M_VQ}_k/meta/mean.npy": "9e23fac51db2215ab5666324226be48f27efd6a6e7b22ebd17c28e0f056a7c22",
        f"{_T2M_VQ}_k/meta/std.npy": "296a60656cea07e65ee64512d73d47c0412df0698b35194116330661be32fa90",
        f"{_T2M_MASKED}_k/model/latest.tar":
            "bd74619458cb8df1a54cef9653686565d09920c4fd153782018b7dd0cadf11c0",
        f"{_T2M_RESIDUAL}_k/model/net_best_fid.tar":
            "eab9c83a3413aea7236d0fb41ec408e47d1a3317501718bf1a223d8bfbb8a1a4",
    },
)

ARCHIVES: dict[str, CheckpointArchive] = {"t2m": HUMANML3D, "kit": KIT}

_CLIP_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
CLIP_VIT_B32 = ClipFile(
    filename="ViT-B-32.pt",
    url=f"https://openaipublic.azureedge.net/clip/models/{_CLIP_SHA256}/ViT-B-32.pt",
    sha256=_CLIP_SHA256,
)

CLIP_SUBDIR = "clip"
DOWNLOADS_SUBDIR = ".downloads"
_STAGING_MARK = ".installing-"
_CHUNK = 1 << 20


class DownloadError(CheckpointError):
    """A download failed after retries (server error, unexpected page, interrupted too often)."""

    code = "download_failed"


class NetworkUnavailableError(DownloadError):
    """The download server cannot be reached at all (offline, DNS, firewall)."""

    code = "offline"


class Cancelled(CheckpointError):
    """The caller's ``cancelled()`` said stop: a partial download is kept for resuming, a staging folder
    is deleted, nothing is half-installed."""

    code = "cancelled"


class Step(NamedTuple):
    """Where an install is, for a progress display (the add-on's preferences draw it).

    ``phase``: ``download`` (``done`` of ``total`` bytes on disk, a resumed part included), ``verify``
    (extracting and checking: no byte count), ``installed``. ``files_done`` of ``files_total`` counts
    the files this run installs (those already installed and verified are not counted).
    """

    filename: str
    phase: str
    done: int
    total: int | None
    files_done: int
    files_total: int


#: Called on the installing thread with each :class:`Step` (keep it cheap: it runs per chunk).
OnStep = Callable[[Step], None]
#: Polled between chunks, members and retries; True stops the install with :class:`Cancelled`.
IsCancelled = Callable[[], bool]


def _check_cancelled(cancelled: IsCancelled | None, what: str) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled(f"Cancelled {what}. Nothing was half-installed; a partial download is kept "
                        "and the next install resumes it.", "Install again to continue where it stopped.")


# --- what is installed -----------------------------------------------------------------------------


def missing_files(root: Path, dataset: str = "t2m", clip: bool = True) -> list[str]:
    """Files the backend needs that are absent under ``root`` (sizes not checked: test weights count)."""
    root = Path(root)
    missing = [f"{dataset}/{rel}" for rel in ARCHIVES[dataset].members
               if not (root / dataset / rel).is_file()]
    if clip and not (root / CLIP_SUBDIR / CLIP_VIT_B32.filename).is_file():
        missing.append(f"{CLIP_SUBDIR}/{CLIP_VIT_B32.filename}")
    return missing


def archive_problems(folder: Path, archive: CheckpointArchive) -> list[str]:
    """What differs between an installed dataset folder and the official release ([] = identical)."""
    return member_problems(archive, lambda rel: (folder / rel).stat().st_size if (folder / rel).is_file()
                           else None)


def member_problems(archive: CheckpointArchive, size_of: Callable[[str], int | None]) -> list[str]:
    """Members missing (``size_of`` gives None) or not of the official size."""
    problems = []
    for rel, size in archive.members.items():
        found = size_of(rel)
        if found is None:
            problems.append(f"{rel} is missing")
        elif size is not None and found != size:
            problems.append(f"{rel} is {found:,} bytes, the official file is {size:,}")
    return problems


def checksum_problems(folder: Path, archive: CheckpointArchive) -> list[str]:
    """Members under ``folder`` whose sha256 differs from the official digest."""
    return [f"{rel} has sha256 {digest}, the official file has {expected}"
            for rel, expected in archive.checksums.items()
            if (digest := sha256_of(folder / rel)) != expected]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- manual steps ----------------------------------------------------------------------------------


def manual_steps(archives: Iterable[CheckpointArchive] = (HUMANML3D,), clip: ClipFile | None = CLIP_VIT_B32,
                 command: str = "python build.py weights") -> str:
    """What to do by hand when this machine cannot download the files itself."""
    archives = list(archives)
    lines = ["Download these files in a web browser (on any machine):"]
    for archive in archives:
        lines.append(f"  {archive.description} ({archive.filename}): {archive.browser_url}")
    if clip is not None:
        lines.append(f"  {clip.description} ({clip.filename}): {clip.url}")
    files = [a.filename for a in archives] + ([clip.filename] if clip is not None else [])
    lines.append("then install them from where you saved them:")
    lines.append(f"  {command} " + " ".join(f"--from-zip PATH/{name}" for name in files))
    return "\n".join(lines)


# --- downloading -----------------------------------------------------------------------------------


class _Progress:
    """Bytes, percentage and rate on stderr; one refreshed line on a terminal, a line now and then if not."""

    def __init__(self, label: str, stream: IO[str] | None) -> None:
        self.label = label
        self.stream = stream
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.started = time.monotonic()
        self.last = 0.0
        self.start_bytes: int | None = None

    def update(self, done: int, total: int | None, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if self.start_bytes is None:
            self.start_bytes = done
        if not final and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        rate = (done - self.start_bytes) / max(now - self.started, 1e-6)
        text = f"  {self.label}: {_mb(done)}"
        if total:
            text += f" / {_mb(total)} ({100.0 * done / total:5.1f}%)"
        text += f" at {_mb(rate)}/s"
        if self.tty:
            self.stream.write("\r" + text.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class _ConfirmFormParser(html.parser.HTMLParser):
    """Finds Google Drive's "can't scan this file for viruses" form (or a link with ``confirm=``)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.confirm_link: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None and ("download" in attr.get("id", "") or
                                                      "download" in attr.get("action", "")):
            self.action = attr.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and attr.get("name"):
            self.fields[attr["name"]] = attr.get("value", "")
        elif tag == "a" and "confirm=" in attr.get("href", "") and self.confirm_link is None:
            self.confirm_link = attr["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _confirmation_url(page: str, page_url: str) -> str | None:
    """The real download URL behind a Drive confirmation page, or None when the page is not one."""
    parser = _ConfirmFormParser()
    parser.feed(page)
    if parser.action is not None:
        action = urllib.parse.urljoin(page_url, parser.action or page_url)
        query = urllib.parse.urlencode(parser.fields)
        return action + ("&" if "?" in action else "?") + query if query else action
    if parser.confirm_link is not None:
        return urllib.parse.urljoin(page_url, parser.confirm_link.replace("&amp;", "&"))
    return None


def _connect_failure(err: BaseException) -> str | None:
    """"definite" when no connection can be made (no DNS, refused, no route: retrying will not help),
    "maybe" for a connect timeout, None for failures after connecting."""
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError)) or (
            isinstance(reason, OSError) and reason.errno in {101, 113, 10051, 10065}):  # net/host unreachable
        return "definite"
    if isinstance(reason, TimeoutError) and isinstance(err, urllib.error.URLError):
        return "maybe"
    return None


#: Failures worth retrying: the connection, not the file, went wrong.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def download(url: str, target: Path, *, label: str | None = None, retries: int = 5, backoff: float = 1.0,
             timeout: float = 30.0, progress: IO[str] | None = sys.stderr,
             on_bytes: Callable[[int, int | None], None] | None = None,
             cancelled: IsCancelled | None = None) -> Path:
    """Download ``url`` to ``target``, resuming from ``target + '.part'``; returns ``target``.

    The partial file is kept when the transfer fails (or is cancelled) so the next call continues
    where this one stopped. Follows Google Drive's confirmation page for files too large for its virus
    scan. ``on_bytes(done, total)`` is called as bytes arrive; ``cancelled()`` is polled between
    chunks (each read returns what has arrived, so a slow server does not delay a cancel; a server
    that sends nothing at all delays it up to ``timeout``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    label = label or target.name
    meter = _Progress(label, progress)
    failures = 0
    furthest = 0  # most bytes ever on disk: only new ground resets the retry budget
    pages_followed = 0
    ever_connected = False
    # Drive's older confirmation flow checks a cookie set by the warning page: keep cookies per file.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    while True:
        _check_cancelled(cancelled, f"the download of {label}")
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "momask-blender-weights/1"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with opener.open(request, timeout=timeout) as response:
                ever_connected = True
                content_type = response.headers.get("Content-Type", "")
                if content_type.startswith("text/html"):
                    page = response.read(2_000_000).decode("utf-8", "replace")
                    next_url = _confirmation_url(page, response.geturl())
                    pages_followed += 1
                    if next_url is None or next_url == url or pages_followed > 3:
                        raise DownloadError(
                            f"The server sent a web page instead of {label} ({response.geturl()}); Google "
                            "Drive does this when a file's daily download quota is exceeded.",
                            "Try again later, or download it in a browser and install it with --from-zip "
                            "(in Blender: Install From File...).")
                    url = next_url
                    continue
                total = _expected_total(response, have)
                if response.status == 200 and have:
                    # The server ignored the Range header: the body is the whole file, start over.
                    have = 0
                mode = "ab" if have else "wb"
                with open(part, mode) as out:
                    done = have
                    if on_bytes is not None:
                        on_bytes(done, total)
                    for block in iter(lambda: response.read1(_CHUNK), b""):
                        out.write(block)
                        done += len(block)
                        if done > furthest:
                            furthest, failures = done, 0  # the retry budget is per stall, not per file
                        meter.update(done, total)
                        if on_bytes is not None:
                            on_bytes(done, total)
                        _check_cancelled(cancelled, f"the download of {label}")
                if total is not None and done != total:
                    raise http.client.IncompleteRead(b"", total - done)
        except urllib.error.HTTPError as err:
            if err.code == 416:
                # Range not satisfiable: the .part file is complete when its size is the file's size.
                full_size = err.headers.get("Content-Range", "").rpartition("/")[2]
                if not (full_size.isdigit() and int(full_size) == have):
                    part.unlink(missing_ok=True)
                    continue
            elif err.code in (408, 429) or err.code >= 500:
                failures += 1
                if failures > retries:
                    raise DownloadError(f"Downloading {label} failed: HTTP {err.code} from {url}.",
                                        "Try again later; the download resumes where it stopped.") from err
                _sleep_backoff(backoff, failures, cancelled)
                continue
            else:
                raise DownloadError(
                    f"Downloading {label} failed: HTTP {err.code} {err.reason} from {url}.",
                    "Check the address, or download it in a browser and use --from-zip (in Blender: Install "
                    "From File...).") from err
        except _TRANSIENT as err:
            failures += 1
            connect = None if ever_connected else _connect_failure(err)
            unreachable = connect is not None
            if failures > retries or connect == "definite":
                host = urllib.parse.urlsplit(url).hostname
                if unreachable:
                    raise NetworkUnavailableError(f"Cannot reach {host} to download {label}: {_reason(err)}.",
                                                  "Check the network connection or proxy, or install the "
                                                  "files by hand (see below).") from err
                raise DownloadError(
                    f"Downloading {label} from {host} kept failing ({_reason(err)}); "
                    f"{part.stat().st_size if part.exists() else 0:,} bytes are kept in {part}.",
                    "Run the same command again: the download resumes where it stopped.") from err
            _sleep_backoff(backoff, failures, cancelled)
            continue
        break
    size = part.stat().st_size
    meter.update(size, size, final=True)
    os.replace(part, target)
    return target


def _expected_total(response: http.client.HTTPResponse, have: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and "/" in content_range:
        start = content_range.split()[-1].split("-")[0]
        if start.isdigit() and int(start) != have:
            raise http.client.HTTPException(f"server resumed at byte {start}, asked for {have}")
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return int(length) + (have if response.status == 206 else 0)


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    return str(reason) or type(reason).__name__


def _sleep_backoff(backoff: float, failures: int, cancelled: IsCancelled | None = None) -> None:
    """Wait before a retry, in short slices so that a cancel does not wait for the whole pause."""
    if backoff <= 0:
        return
    until = time.monotonic() + min(backoff * 2 ** (failures - 1), 30.0)
    while (left := until - time.monotonic()) > 0:
        _check_cancelled(cancelled, "the download")
        time.sleep(min(left, 0.1))


# --- installing ------------------------------------------------------------------------------------


def _dataset_prefixes(zf: zipfile.ZipFile, archive: CheckpointArchive) -> list[str]:
    """Where ``archive``'s dataset folder starts in the zip: "", "t2m/", "checkpoints/t2m/"..."""
    anchor = archive.anchor
    prefixes = []
    for name in zf.namelist():
        if name.endswith(anchor):
            prefix = name[: -len(anchor)]
            if prefix == "" or prefix.endswith("/"):
                prefixes.append(prefix)
    return sorted(prefixes, key=len)


def archives_in_zip(path: Path, candidates: Iterable[CheckpointArchive] | None = None
                    ) -> list[tuple[CheckpointArchive, str]]:
    """The datasets a zip holds, each with its folder prefix inside the zip."""
    with zipfile.ZipFile(path) as zf:
        found = []
        for archive in (candidates if candidates is not None else ARCHIVES.values()):
            prefixes = _dataset_prefixes(zf, archive)
            if prefixes:
                found.append((archive, prefixes[0]))
        return found


def _not_verifiable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid official MoMask checkpoint zip: {why}. (The installer checks that the "
        "zip is intact, that every model file has the official byte size and, where the official "
        "sha256 is known, that digest.)",
        "Delete the file and download it again (`python build.py weights`, or in a browser).")


def install_archive(zip_path: Path, root: Path, archive: CheckpointArchive, prefix: str | None = None,
                    log: Callable[[str], None] = print, cancelled: IsCancelled | None = None) -> Path:
    """Verify ``zip_path`` and install its dataset folder atomically as ``root/<dataset>``
    (``cancelled`` is polled between members: a cancel deletes the staging folder)."""
    zip_path, root = Path(zip_path), Path(root)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise _not_verifiable(zip_path, f"it cannot be opened as a zip ({err})") from err
    with zf:
        if prefix is None:
            prefixes = _dataset_prefixes(zf, archive)
            if not prefixes:
                raise _not_verifiable(zip_path, f"it holds no {archive.dataset} model folders "
                                                f"(looked for .../{archive.anchor})")
            prefix = prefixes[0]
        infos = {info.filename: info for info in zf.infolist()}
        problems = member_problems(
            archive, lambda rel: infos[prefix + rel].file_size if prefix + rel in infos else None)
        if problems:
            raise _not_verifiable(zip_path, "; ".join(problems))

        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{archive.dataset}{_STAGING_MARK}", dir=root))
        try:
            log(f"  extracting {zip_path.name} (each member's CRC is checked as it is read) ...")
            for name, info in infos.items():
                if info.is_dir() or not name.startswith(prefix) or name == prefix:
                    continue
                _check_cancelled(cancelled, f"the installation of {archive.description}")
                rel = name[len(prefix):]
                parts = Path(rel).parts
                if Path(rel).is_absolute() or ".." in parts or not parts:
                    raise _not_verifiable(zip_path, f"member {name!r} points outside its folder")
                out_path = staging.joinpath(*parts)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(out_path, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                except (zipfile.BadZipFile, EOFError, NotImplementedError, zlib_error) as err:
                    raise _not_verifiable(zip_path, f"member {name} is corrupt (CRC mismatch or "
                                                    f"truncated: {err})") from err
            # the sizes were checked in the zip's directory and the CRCs while extracting
            log(f"  verifying the sha256 of {len(archive.checksums)} model files ...")
            problems = checksum_problems(staging, archive)
            if problems:
                raise _not_verifiable(zip_path, "after extraction " + "; ".join(problems))
            _swap_into_place(staging, root / archive.dataset)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log(f"  installed {archive.description} into {root / archive.dataset}")
    return root / archive.dataset


def _swap_into_place(staged: Path, final: Path) -> None:
    """Replace ``final`` by ``staged`` with renames only, so readers see the old or the new folder."""
    backup = None
    if final.exists():
        backup = final.with_name(f".{final.name}.previous-{os.getpid()}")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(final, backup)
    try:
        os.replace(staged, final)
    except BaseException:
        if backup is not None:
            os.replace(backup, final)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def install_clip_file(src: Path, root: Path, clip: ClipFile = CLIP_VIT_B32, move: bool = False,
                      log: Callable[[str], None] = print) -> Path:
    """Check ``src`` against CLIP's sha256 and place it at ``root/clip/ViT-B-32.pt``."""
    src, root = Path(src), Path(root)
    digest = sha256_of(src)
    if digest != clip.sha256:
        raise CheckpointError(
            f"{src} is not the official {clip.filename}: its sha256 is {digest}, expected {clip.sha256}.",
            f"Delete it and download it again from {clip.url} "
            "(or run `python build.py weights --clip-only`).")
    final = root / CLIP_SUBDIR / clip.filename
    final.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, final)
    else:
        staged = final.with_name(final.name + _STAGING_MARK + str(os.getpid()))
        try:
            shutil.copyfile(src, staged)
            os.replace(staged, final)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
    log(f"  installed {clip.description} into {final} (sha256 verified)")
    return final


def _clean_stale_staging(root: Path) -> None:
    """Tidy up after an installer that was killed outright (no Python cleanup ran).

    Half-extracted staging folders are deleted. A ``.previous-`` backup is the old install moved
    aside just before the swap: it is put back when the swap never happened, deleted otherwise.
    """
    for folder in (root, root / CLIP_SUBDIR):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not entry.name.startswith(".") and _STAGING_MARK not in entry.name:
                continue
            if _STAGING_MARK in entry.name:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            elif ".previous-" in entry.name:
                original = folder / entry.name[1:].split(".previous-")[0]
                if original.exists():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    os.replace(entry, original)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def install(root: Path, datasets: Sequence[str] = ("t2m",), *, clip: bool = True, base_url: str | None = None,
            archives: Mapping[str, CheckpointArchive] | None = None, clip_file: ClipFile = CLIP_VIT_B32,
            force: bool = False, retries: int = 5, backoff: float = 1.0, timeout: float = 30.0,
            progress: IO[str] | None = sys.stderr, log: Callable[[str], None] = print,
            on_step: OnStep | None = None, cancelled: IsCancelled | None = None) -> list[Path]:
    """Download (resuming) and install the checkpoints of ``datasets`` and CLIP under ``root``.

    Already-installed, verified pieces are skipped unless ``force``. ``base_url`` (or the
    ``MOMASK_WEIGHTS_BASE_URL`` variable) replaces the official hosts by a mirror serving the same
    file names. Raises :class:`NetworkUnavailableError` (with the manual steps) when offline, and
    :class:`Cancelled` when ``cancelled()`` turns True. ``on_step`` receives the progress
    (:class:`Step`); ``progress`` and ``log`` are the command line's output.
    """
    root = Path(root)
    archives = dict(archives if archives is not None else ARCHIVES)
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    wanted = [archives[d] for d in datasets]
    downloads = root / DOWNLOADS_SUBDIR
    _clean_stale_staging(root)
    installed: list[Path] = []

    def url_of(filename: str, official: str) -> str:
        return f"{base_url.rstrip('/')}/{filename}" if base_url else official

    # What this run downloads, decided first so that the progress can say "file 1 of 2"
    pending: list[CheckpointArchive | ClipFile] = []
    for archive in wanted:
        folder = root / archive.dataset
        if not force and folder.is_dir() and not archive_problems(folder, archive):
            log(f"  {archive.description}: already installed in {folder}, verified sizes")
            continue
        if folder.is_dir():
            log(f"  {folder} is not the official release; it is replaced once the new copy is verified")
        pending.append(archive)
    if clip:
        final = root / CLIP_SUBDIR / clip_file.filename
        if not force and final.is_file() and sha256_of(final) == clip_file.sha256:
            log(f"  {clip_file.description}: already installed in {final}, sha256 verified")
        else:
            pending.append(clip_file)

    def step(item: CheckpointArchive | ClipFile, phase: str, index: int, done: int = 0,
             total: int | None = None) -> None:
        if on_step is not None:
            on_step(Step(item.filename, phase, done, total, index, len(pending)))

    def fetch(item: CheckpointArchive | ClipFile, index: int) -> Path:
        official = item.url if isinstance(item, ClipFile) else item.official_url
        host = urllib.parse.urlsplit(url_of(item.filename, official)).hostname
        log(f"  downloading {item.description} ({item.filename}) from {host}")
        try:
            return download(url_of(item.filename, official), downloads / item.filename, label=item.filename,
                            retries=retries, backoff=backoff, timeout=timeout, progress=progress,
                            on_bytes=lambda done, total: step(item, "download", index, done, total),
                            cancelled=cancelled)
        except NetworkUnavailableError as err:
            raise NetworkUnavailableError(
                err.problem, err.fix + "\n" + manual_steps(wanted, clip_file if clip else None)) from err

    try:
        for index, item in enumerate(pending):
            path = fetch(item, index)
            step(item, "verify", index)
            try:
                if isinstance(item, ClipFile):
                    installed.append(install_clip_file(path, root, item, move=True, log=log))
                else:
                    installed.append(install_archive(path, root, item, log=log, cancelled=cancelled))
            except Cancelled:
                # Back to a complete partial file: the next run's Range request finds it whole (416)
                # and verifies it again without fetching a byte.
                os.replace(path, path.with_name(path.name + ".part"))
                raise
            except CheckpointError:
                path.unlink(missing_ok=True)  # a complete but wrong file: download afresh next time
                raise
            path.unlink(missing_ok=True)
            step(item, "installed", index + 1)
    finally:
        _remove_if_empty(downloads)
    return installed


def install_from_files(root: Path, files: Iterable[Path], *,
                       archives: Mapping[str, CheckpointArchive] | None = None,
                       clip_file: ClipFile = CLIP_VIT_B32, log: Callable[[str], None] = print,
                       on_step: OnStep | None = None, cancelled: IsCancelled | None = None) -> list[Path]:
    """Install files the user downloaded: official MoMask zips (any dataset they hold) or ViT-B-32.pt.
    ``on_step`` and ``cancelled`` as for :func:`install` (the phases are ``verify`` and ``installed``)."""
    root = Path(root)
    candidates = list((archives if archives is not None else ARCHIVES).values())
    files = [Path(f) for f in files]
    _clean_stale_staging(root)
    installed = []
    for index, path in enumerate(files):
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist.", "Give the path of the downloaded file.")
        if on_step is not None:
            on_step(Step(path.name, "verify", 0, None, index, len(files)))
        if path.suffix.lower() == ".zip" and not zipfile.is_zipfile(path):
            raise _not_verifiable(path, "it cannot be opened as a zip (truncated, or not a zip)")
        if zipfile.is_zipfile(path):
            found = archives_in_zip(path, candidates)
            if not found:
                names = ", ".join(a.filename for a in candidates)
                raise _not_verifiable(path, f"it holds none of the official model folders ({names})")
            for archive, prefix in found:
                installed.append(install_archive(path, root, archive, prefix, log=log, cancelled=cancelled))
        else:
            installed.append(install_clip_file(path, root, clip_file, log=log))
        if on_step is not None:
            on_step(Step(path.name, "installed", 0, None, index + 1, len(files)))
    return installed


# --- command line ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("weights"), help="weights root (default: weights/)")
    parser.add_argument("--dataset", choices=("t2m", "kit", "all"), default="t2m",
                        help="t2m = HumanML3D (default, what the add-on uses), kit = KIT-ML, all = both")
    parser.add_argument("--from-zip", dest="from_zip", type=Path, nargs="+", action="extend", metavar="FILE",
                        help="install files you already downloaded (an official zip, or ViT-B-32.pt)")
    parser.add_argument("--clip-only", action="store_true", help="install only CLIP ViT-B/32")
    parser.add_argument("--force", action="store_true", help="download and reinstall even if installed")
    parser.add_argument("--base-url", default=None,
                        help=f"mirror serving the same file names (or set {BASE_URL_ENV})")


def run(args: argparse.Namespace) -> int:
    """Execute parsed arguments; print the problem and the fix on failure. Returns the exit status."""
    datasets = ("t2m", "kit") if args.dataset == "all" else (args.dataset,)
    try:
        if args.from_zip:
            install_from_files(args.dir, args.from_zip)
        else:
            install(args.dir, () if args.clip_only else datasets, force=args.force, base_url=args.base_url)
    except KeyboardInterrupt:
        print("\nInterrupted; nothing was half-installed (a partial download is kept for resuming).",
              file=sys.stderr)
        return 130
    except CheckpointError as err:
        print(f"\nThe weights were NOT installed. {err.problem}", file=sys.stderr)
        if err.fix:
            print(f"Fix: {err.fix}", file=sys.stderr)
        return 1
    print(f"Weights ready in {args.dir}.")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python build.py weights") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(prog="python -m backend.portable.weights_installer"))
