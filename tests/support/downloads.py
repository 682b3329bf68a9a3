"""Download jobs for tests of the engine: seeded payloads, content jobs with digests computed here (hashlib and the
``blake3`` package, not the engine), where a job's file lands, and a client with short timeouts."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import blake3

from upmirror import DownloadJob, HttpClient, content_relative_path

CHUNK = 64 << 10  # the engine's smallest chunk size, so small test files still split into many chunks


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def content_job(url: str, data: bytes, *, strongest: str = "blake3") -> DownloadJob:
    digests: dict[str, str] = {}
    if strongest == "blake3":
        digests["blake3"] = blake3.blake3(data).hexdigest()
    elif strongest == "sha256":
        digests["sha256"] = hashlib.sha256(data).hexdigest()
    return DownloadJob.content(url, hashlib.sha1(data).hexdigest(), ".cab", len(data), **digests)


def placed_path(content: Path, data: bytes) -> Path:
    return content / content_relative_path(hashlib.sha1(data).hexdigest(), ".cab")


def quick_client(**options: object) -> HttpClient:
    return HttpClient(read_timeout=1.0, connect_timeout=2.0, **options)  # type: ignore[arg-type]
