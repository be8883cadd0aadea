"""Checks of the built website in _build/html (``make test`` builds it with -W first).

1. Every internal link and anchor resolves (a small, strict link checker: the site is offline,
   so every href and src must point to a file of the build).
2. No page references an asset on another host (the site must work offline, no CDN).
3. A headless Chromium, driven by Playwright, visits every page of the table of contents and
   checks what a reader sees: a heading, math rendered by MathJax, every image loaded, a clean
   console, and not a single request leaving 127.0.0.1. It saves a screenshot of each page
   under _build/screenshots/.
"""

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from conftest import BUILD_HTML, ROOT, toc_files

pytestmark = pytest.mark.site

PAGES = toc_files()
SCREENSHOTS = ROOT / "_build" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",  # no update checks or other traffic of Chromium's own
    "--disable-component-update",
    "--no-first-run",
]
# Console messages that are not the site's fault. Keep this list short and explain each entry.
CONSOLE_ALLOWLIST: tuple[str, ...] = ()


class LinkParser(HTMLParser):
    """Collects ids (anchor targets) and every href/src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value:
                self.links.append((tag, value))


@functools.cache
def parse(page: Path) -> LinkParser:
    parser = LinkParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def built_pages() -> list[Path]:
    if not (BUILD_HTML / "index.html").exists():
        pytest.fail("No website in _build/html: run `make book` (make test builds it first).")
    static = BUILD_HTML / "_static"  # theme templates and vendored MathJax, not pages
    return sorted(p for p in BUILD_HTML.rglob("*.html") if static not in p.parents)


def is_external(url: str) -> bool:
    parsed = urlparse(url)
    return bool(parsed.scheme and parsed.scheme not in ("file",)) or url.startswith("//")


def test_every_internal_link_resolves():
    broken = []
    for page in built_pages():
        for tag, url in parse(page).links:
            if is_external(url) or url.startswith(("mailto:", "javascript:", "data:")):
                continue
            path, fragment = urldefrag(url)
            target = (page.parent / unquote(path.split("?")[0])).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(BUILD_HTML)}: <{tag}> {url} (no such file)")
            elif fragment and target.suffix == ".html" and fragment not in parse(target).ids:
                broken.append(f"{page.relative_to(BUILD_HTML)}: <{tag}> {url} (no such anchor)")
    assert broken == []


def test_no_asset_is_loaded_from_another_host():
    remote = []
    for page in built_pages():
        for tag, url in parse(page).links:
            if tag in ("script", "link", "img", "iframe", "source") and is_external(url):
                if tag == "link" and "canonical" in url:
                    continue
                remote.append(f"{page.relative_to(BUILD_HTML)}: <{tag}> {url}")
    assert remote == []


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(BUILD_HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


NO_BROWSER = """No Chromium-family browser found for the browser checks. Get one of:
  1. Debian/Ubuntu's Chromium: sudo apt-get install chromium
  2. Playwright's own Chromium: .venv/bin/python -m playwright install chromium
  3. Google Chrome, from https://www.google.com/chrome/"""


def find_chromium(playwright) -> str:
    """The first Chromium-family browser found, in this order: Debian's chromium on PATH,
    Playwright's own Chromium (under ~/.cache/ms-playwright or $PLAYWRIGHT_BROWSERS_PATH, as
    `playwright install chromium` puts it), Google Chrome or chromium-browser on PATH, and
    Google Chrome on macOS. Fails the test (not a skip) with the three ways to get one."""
    candidates = [
        shutil.which("chromium"),
        playwright.chromium.executable_path,  # where Playwright's own Chromium would be
        *(shutil.which(n) for n in ("google-chrome", "google-chrome-stable", "chromium-browser")),
        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(NO_BROWSER)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        executable = find_chromium(playwright)
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


WAIT_FOR_IMAGES = """
() => Promise.all([...document.images].map(img => img.complete ? null :
        new Promise(done => { img.onload = img.onerror = done; })))
"""
BROKEN_IMAGES = "() => [...document.images].filter(i => i.naturalWidth === 0).map(i => i.src)"
WAIT_FOR_MATHJAX = "() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null"


@pytest.mark.parametrize("page_file", PAGES)
def test_page_in_the_browser(page_file, server, browser):
    built_pages()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    outside, console_errors = [], []

    def route(route, request):
        if urlparse(request.url).hostname in LOCAL_HOSTS:
            return route.continue_()
        outside.append(request.url)
        return route.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(f"{server}/{page_file}.html", wait_until="networkidle")
    page.evaluate(WAIT_FOR_IMAGES)
    page.evaluate(WAIT_FOR_MATHJAX)

    heading = page.locator("article h1").first
    assert heading.inner_text().strip(), f"{page_file}: no heading"
    math_sources = page.locator("article .math").count()
    if math_sources:
        rendered = page.locator("article mjx-container").count()
        assert rendered >= math_sources, (
            f"{page_file}: {math_sources} formulas, {rendered} rendered"
        )
    assert page.evaluate(BROKEN_IMAGES) == []
    errors = [e for e in console_errors if not any(a in e for a in CONSOLE_ALLOWLIST)]
    assert errors == []
    page.screenshot(path=str(SCREENSHOTS / f"{Path(page_file).name}.png"), full_page=True)
    page.close()
    assert outside == [], f"{page_file} asked other hosts for: {outside}"
