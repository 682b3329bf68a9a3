"""Content directories for tests: files of seeded random bytes at their WSUS layout paths, digests computed here with
hashlib (independently of the code under test), a byte-for-byte tree comparison, a loop-mounted XFS for reflinks,
and a small tmpfs that fills up.

Tests that need a loop mount (reflinks, FIDEDUPERANGE) take it from ``required_xfs()``, the one skip policy: CI runs
as root, so there a mount that cannot be made is a failure saying why; only a run without root skips them."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import msgspec
import pytest

import upmirror

INDEX_FILE = ".upmirror-index"


def make_content_dir(root: Path, sizes: Sequence[int], seed: int = 1, extension: str = ".cab") -> dict[str, bytes]:
    """Writes one file per size (random bytes from ``seed``) at its layout path; returns relative path -> bytes."""
    generator = random.Random(seed)
    files: dict[str, bytes] = {}
    for size in sizes:
        data = generator.randbytes(size)
        relative = upmirror.content_relative_path(hashlib.sha1(data).hexdigest(), extension)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[relative] = data
    return files


def layout_files(root: Path) -> dict[str, bytes]:
    """Every file under the layout's two-hex-digit folders (upmirror's own dot-entries excluded)."""
    return {
        f"{folder.name}/{file.name}": file.read_bytes()
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
        for file in sorted(folder.iterdir())
    }


def flip_byte(path: Path, offset: int = 0, keep_mtime: bool = False) -> None:
    """Corrupts one byte in place (same size); with ``keep_mtime`` the modification time is put back."""
    stat = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


class IndexDocument(msgspec.Struct):
    version: int
    entries: list[tuple[str, int, int, str | None, bool]]


def read_index(root: Path) -> dict[str, tuple[int, int, str | None, bool]]:
    """The content index decoded with msgspec (as other tools read it): path -> (size, mtime_ns, blake3, sha1 ok)."""
    document = msgspec.msgpack.decode((root / INDEX_FILE).read_bytes(), type=IndexDocument)
    assert document.version == 1
    return {path: (size, mtime, blake3, verified) for path, size, mtime, blake3, verified in document.entries}


@contextmanager
def loop_mounted_xfs(size_mib: int = 512) -> Iterator[Path]:
    """A reflink-capable XFS made in a file and loop-mounted; unmounted and removed afterwards. Raises
    ``LoopMountRefused`` when the kernel (a container) refuses loop mounts."""
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-xfs-"))
    image, mountpoint = scratch / "xfs.img", scratch / "mnt"
    mountpoint.mkdir()
    mounted = False
    try:
        if shutil.which("mkfs.xfs") is None:
            raise LoopMountRefused("mkfs.xfs is not installed (xfsprogs)")
        with image.open("wb") as f:
            f.truncate(size_mib << 20)
        subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True, capture_output=True)
        mount = subprocess.run(
            ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True, text=True, check=False
        )
        if mount.returncode != 0:
            raise LoopMountRefused(mount.stderr.strip() or f"mount exited {mount.returncode}")
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True)
        shutil.rmtree(scratch)


class LoopMountRefused(Exception):
    """The kernel refused to loop-mount a filesystem image (no privileges, no loop devices), or no XFS can be made."""


@contextmanager
def required_xfs(size_mib: int = 512) -> Iterator[Path]:
    """``loop_mounted_xfs`` under the skip policy of the module's description."""
    try:
        with loop_mounted_xfs(size_mib) as mountpoint:
            yield mountpoint
    except LoopMountRefused as refused:
        missing_capability(f"no loop-mounted XFS: {refused}")


@contextmanager
def small_tmpfs(mountpoint: Path, size: str = "1m") -> Iterator[Path]:
    """A real filesystem that fills up: a tmpfs of ``size`` mounted at ``mountpoint`` (made here), unmounted after;
    ``grow_tmpfs`` gives it room again. Mounting needs root (CI has it); without root it is missing_capability."""
    if os.geteuid() != 0:
        missing_capability("a small tmpfs needs root to mount")
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def grow_tmpfs(mountpoint: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mountpoint)], check=True)


def missing_capability(reason: str) -> NoReturn:
    """A test cannot get what it needs from the machine: a failure as root (CI, where it must run), else a skip."""
    if os.geteuid() == 0:
        pytest.fail(f"{reason} (running as root, as CI does, this test must run)", pytrace=False)
    pytest.skip(reason)


def shared_extents(path: Path) -> bool:
    """True when ``filefrag`` marks the file's extents as shared with another file (a reflink)."""
    output = subprocess.run(["filefrag", "-v", str(path)], check=True, capture_output=True, text=True).stdout
    return "shared" in output


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
