"""Tests of tutorlib.integrity (Lessons 3 and 6): SHA-256 pinned in code, checked on load."""

import hashlib
from pathlib import Path

import pytest

from tutorlib.models.integrity import read_verified, sha256_of, verify_sha256

# SHA-256 of the empty string and of b"abc": the test vectors of FIPS 180-2, appendix B.1.
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.fixture
def abc_file(tmp_path: Path) -> Path:
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    return path


def test_sha256_of_the_standard_test_vectors(tmp_path: Path, abc_file: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert sha256_of(empty) == EMPTY_SHA256
    assert sha256_of(abc_file) == ABC_SHA256
    assert sha256_of(str(abc_file)) == ABC_SHA256  # a str path works too


def test_sha256_of_agrees_with_hashlib_on_a_large_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # 10 MB, read by file_digest in chunks
    path = tmp_path / "large.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("digest", [ABC_SHA256, ABC_SHA256.upper(), f"  {ABC_SHA256}\n"],
                         ids=["lower", "upper-case", "padded"])  # fmt: skip
def test_verify_sha256_accepts_the_digest_in_any_case(abc_file: Path, digest: str) -> None:
    assert verify_sha256(abc_file, digest, "reinstall") is None
    assert read_verified(abc_file, digest, "reinstall") == b"abc"


@pytest.mark.parametrize("check", [verify_sha256, read_verified], ids=["verify", "read"])
def test_a_changed_byte_is_refused_with_the_fix(abc_file: Path, check) -> None:
    abc_file.write_bytes(b"abd")
    with pytest.raises(ValueError, match=f"SHA-256 mismatch for abc.bin: expected {ABC_SHA256}"
                       ".*not the published one. Reinstall it"):  # fmt: skip
        check(abc_file, ABC_SHA256, "Reinstall it.")


@pytest.mark.parametrize("check", [verify_sha256, read_verified], ids=["verify", "read"])
def test_missing_file_and_folder_are_clear_errors(tmp_path: Path, check) -> None:
    with pytest.raises(ValueError, match="nothing.bin is missing: path .* does not exist. Fix"):
        check(tmp_path / "nothing.bin", ABC_SHA256, "Fix.")
    with pytest.raises(ValueError, match="is a folder, not a file"):
        check(tmp_path, ABC_SHA256, "Fix.")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"path": None}, TypeError, "path must be a str or a pathlib.Path"),
        ({"path": 3}, TypeError, "path must be a str or a pathlib.Path"),
        ({"expected": "abc"}, ValueError, "expected must be 64 hex digits"),
        ({"expected": "g" * 64}, ValueError, "expected must be 64 hex digits"),
        ({"expected": None}, TypeError, "expected must be a hex SHA-256 string"),
        ({"how_to_fix": None}, TypeError, "how_to_fix must be a str"),
    ],
    ids=["path-none", "path-int", "short-digest", "not-hex", "digest-none", "no-fix"],
)
def test_bad_arguments_are_named(abc_file: Path, kwargs, error, match) -> None:
    arguments = {"path": abc_file, "expected": ABC_SHA256, "how_to_fix": "Fix."} | kwargs
    for check in (verify_sha256, read_verified):
        with pytest.raises(error, match=match):
            check(**arguments)
