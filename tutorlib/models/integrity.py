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


def _check_path(path: object) -> Path:
    """`path` as a Path; TypeError unless it is a str or a path-like object."""
    if isinstance(path, bool) or not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or a pathlib.Path, got {type(path).__name__}")
    return Path(path)


def _check_file(path: object, how_to_fix: str) -> Path:
    """`path` as a Path to an existing regular file, or a ValueError that says how to fix it."""
    path = _check_path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"{path.name} is missing: path {str(path)!r} {what}. {how_to_fix}")
    return path


def _check_how_to_fix(how_to_fix: object) -> str:
    if not isinstance(how_to_fix, str):
        raise TypeError(
            f"how_to_fix must be a str telling the reader what to do, got "
            f"{type(how_to_fix).__name__}"
        )
    return how_to_fix


def _check_digest(expected: object) -> str:
    if not isinstance(expected, str):
        raise TypeError(f"expected must be a hex SHA-256 string, got {type(expected).__name__}")
    digest = expected.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"expected must be 64 hex digits (a SHA-256), got {expected!r}")
    return digest


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (hashlib.file_digest). Example: an empty file gives e3b0c442...b855."""
    path = _check_file(path, "Pass the path of an existing file.")
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _mismatch(path: Path, digest: str, actual: str, how_to_fix: str) -> ValueError:
    return ValueError(
        f"SHA-256 mismatch for {path.name}: expected {digest}, got {actual}. "
        f"The file is corrupted or not the published one. {how_to_fix}"
    )


def verify_sha256(path: str | Path, expected: str, how_to_fix: str) -> None:
    """Raise ValueError unless the file exists and its SHA-256 is `expected` (any letter case).

    Example: verify_sha256("config.json", "953f9c0d...8b41", "reinstall") returns None for the
    published all-MiniLM-L6-v2 config and raises "SHA-256 mismatch for config.json" otherwise.
    """
    how_to_fix = _check_how_to_fix(how_to_fix)
    digest = _check_digest(expected)
    path = _check_file(path, how_to_fix)
    actual = sha256_of(path)
    if actual != digest:
        raise _mismatch(path, digest, actual, how_to_fix)


def read_verified(path: str | Path, expected: str, how_to_fix: str) -> bytes:
    """The file's bytes, after checking that exactly these bytes have the SHA-256 `expected`.

    Example: weights = safetensors.torch.load(read_verified(path, DIGEST, "reinstall")).
    """
    how_to_fix = _check_how_to_fix(how_to_fix)
    digest = _check_digest(expected)
    path = _check_file(path, how_to_fix)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise _mismatch(path, digest, actual, how_to_fix)
    return data
