"""Lessons 3 and 6: files we load are the files we expect, checked by SHA-256 pinned in code.

A digest written next to the file it protects protects nothing (replace both and tampered
weights load silently), so every digest tutorlib checks is a constant in its source code.
`read_verified` hashes the very bytes it returns, so a file cannot change between the check
and the load.

Left out on purpose: signatures (a digest pinned in code is enough for files that ship with
the course), and any download.
"""

import hashlib
from pathlib import Path

__all__ = ["sha256_of", "verify_sha256", "read_verified"]


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (hashlib.file_digest). Example: an empty file gives e3b0c442...b855."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_digest(expected: object) -> str:
    if not isinstance(expected, str):
        raise TypeError(f"expected must be a hex SHA-256 string, got {type(expected).__name__}")
    digest = expected.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"expected must be 64 hex digits (a SHA-256), got {expected!r}")
    return digest


def verify_sha256(path: str | Path, expected: str, how_to_fix: str) -> None:
    """Raise ValueError unless the file exists and its SHA-256 is `expected` (any letter case)."""
    digest = _check_digest(expected)
    if not Path(path).is_file():
        raise ValueError(f"{Path(path).name} is missing. {how_to_fix}")
    actual = sha256_of(path)
    if actual != digest:
        raise ValueError(
            f"SHA-256 mismatch for {Path(path).name}: expected {digest}, got {actual}. "
            f"The file is corrupted or not the published one. {how_to_fix}"
        )


def read_verified(path: str | Path, expected: str, how_to_fix: str) -> bytes:
    """The file's bytes, after checking that exactly these bytes have the SHA-256 `expected`.

    Example: weights = safetensors.torch.load(read_verified(path, DIGEST, "reinstall")).
    """
    digest = _check_digest(expected)
    if not Path(path).is_file():
        raise ValueError(f"{Path(path).name} is missing. {how_to_fix}")
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ValueError(
            f"SHA-256 mismatch for {Path(path).name}: expected {digest}, got {actual}. "
            f"The file is corrupted or not the published one. {how_to_fix}"
        )
    return data
