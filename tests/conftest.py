"""Shared fixtures: the repository's paths and the lessons listed in the table of contents."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_HTML = ROOT / "_build" / "html"


def toc_files() -> list[str]:
    """Every file named in _toc.yml, in reading order, without its extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
