"""Fixtures of the data tests (test_download.py, test_corpus.py)."""

import pytest

from helpers.local_index import serve_folder


@pytest.fixture
def http_root(tmp_path):
    """(folder, base URL) of an http.server on 127.0.0.1 serving that folder."""
    (tmp_path / "www").mkdir()
    with serve_folder(tmp_path / "www") as served:
        yield served
