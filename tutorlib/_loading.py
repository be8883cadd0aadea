"""Private helpers for loading what tutorlib ships: data files, and transformers kept quiet.

Left out on purpose: anything that downloads (the course runs with no model hub).
"""

import contextlib
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from tqdm import TqdmWarning

with warnings.catch_warnings():
    # transformers imports tqdm.auto, which in a notebook without ipywidgets warns on stderr
    # (with a path of this machine); the course only uses tqdm's console bar.
    warnings.simplefilter("ignore", TqdmWarning)
    import transformers

__all__ = ["data_file", "quiet_transformers"]


def data_file(name: str) -> Path:
    """Path of a file shipped in tutorlib/data."""
    return Path(str(resources.files("tutorlib") / "data" / name))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers while loading: no progress bar, no log lines, no warnings.

    Its loading messages go to stderr and some carry file paths of this machine; the course
    reports what matters (sizes, hashes) itself. Settings are restored afterwards.
    """
    verbosity = transformers.logging.get_verbosity()
    bar_was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loading warnings print machine paths
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bar_was_enabled:
            transformers.utils.logging.enable_progress_bar()
