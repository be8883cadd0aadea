"""How long a lesson takes: its reading time from its word count, and its notebook's run time.

A lesson's opening states both, glued from the notebook itself, so that the estimate follows the
page as it is: reading time = words of prose / words per minute, with 150 words a minute for
technical prose with formulas (about half the pace of light reading), and the run time measured
by the run that produced the page.

Leaves out: the time the exercises take, which depends on the learner.
"""

import json
import re
import time
from pathlib import Path

from tutorlib._checks import check_real

__all__ = ["WORDS_PER_MINUTE", "prose_words", "reading_minutes", "LessonClock"]

# Reading speed for technical prose with formulas and code, in words per minute.
WORDS_PER_MINUTE = 150

# A word: a run of letters or digits, with inner apostrophes, dots or hyphens (it's, 6.05, int8-).
_WORD = re.compile(r"[A-Za-z0-9]+(?:['.\-][A-Za-z0-9]+)*")

# MyST markup that is not read: role and directive names, labels, glue keys and their formats.
_MARKUP = re.compile(
    r"\{[a-z:-]+\}`[^`]*`"  # {glue:text}`key:.2f`, {cite:p}`key`, {term}`word`
    r"|^:(?:label|class):.*$"  # directive options
    r"|^```\{[a-z-]+\}.*$"  # ```{exercise}, ```{solution-start} l1-id
    r"|^:::\{[a-z-]+\}",  # :::{admonition}
    re.MULTILINE,
)


def prose_words(notebook_path: str | Path) -> int:
    """The number of words in a notebook's markdown cells, markup left out.

    A glued number counts as one word (the role is replaced by a placeholder); role and
    directive names, labels and glue keys do not count.
    Example: a notebook whose one markdown cell is "Six numbers and {glue:text}`k:.2f` bits."
    has 5 words (the glued value is one).
    """
    if not isinstance(notebook_path, str | Path):
        raise TypeError(
            f"notebook_path must be a str or a pathlib.Path, got {type(notebook_path).__name__}"
        )
    path = Path(notebook_path)
    if not path.is_file():
        raise ValueError(f"notebook_path {str(path)!r} is not a file; pass the lesson's .ipynb")
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"notebook_path {str(path)!r} is not a notebook: {error}") from None
    text = " ".join("".join(c["source"]) for c in cells if c.get("cell_type") == "markdown")
    text = re.sub(r"\{glue:text\}`[^`]*`", " N ", text)  # a glued value reads as one word
    return len(_WORD.findall(_MARKUP.sub(" ", text)))


def reading_minutes(notebook_path: str | Path, words_per_minute: float = WORDS_PER_MINUTE) -> float:
    """Minutes to read a notebook's prose: prose_words / words_per_minute.

    Example: a lesson of 6,000 words reads in 6,000 / 150 = 40 minutes.
    """
    rate = check_real(words_per_minute, "words_per_minute", 0.0, strict_minimum=True)
    return prose_words(notebook_path) / rate


class LessonClock:
    """The wall-clock time since a lesson's first cell ran: started once, read at the end.

    Example: clock = LessonClock() in the first cell; clock.minutes() in the last one.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def minutes(self) -> float:
        """Minutes since the clock was created."""
        return (time.perf_counter() - self.start) / 60
