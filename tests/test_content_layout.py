"""The WSUS content layout as Python sees it: paths derived from digests only, strangers refused."""

from __future__ import annotations

import hashlib

import pytest

import upmirror


def test_relative_path_is_the_wsus_layout() -> None:
    sha1 = hashlib.sha1(b"abc").hexdigest()
    path = upmirror.content_relative_path(sha1, ".cab")
    assert path == f"{sha1[-2:].upper()}/{sha1.upper()}.cab"
    assert upmirror.parse_content_path(path) == (sha1, ".cab")


@pytest.mark.parametrize("extension", ["/../../etc/passwd", ".c/b", "..", ".a b", "cab", ".x\x00"])
def test_extensions_that_name_paths_are_refused(extension: str) -> None:
    with pytest.raises(ValueError, match="extension"):
        upmirror.content_relative_path("0" * 40, extension)


@pytest.mark.parametrize("relative", ["../x", "00/" + "0" * 40 + "/x", "11/" + "0" * 40 + ".cab", "00/" + "g" * 40])
def test_paths_outside_the_layout_are_refused(relative: str) -> None:
    with pytest.raises(ValueError, match="not a content path"):
        upmirror.parse_content_path(relative)
