"""The built book as a reader's browser shows it: Debian's Chromium, headless, driven through selenium and
Debian's chromedriver (tools/install_browser.sh installs both when missing; nothing is downloaded at run
time). `inspect` loads each page at a desktop and a mobile width and reports, from the page's own layout:

- every table, code block, equation or output wider than its container (on a phone, a container marked
  `alllib-scroll` may scroll, and says so), and a page wider than the window;
- a word of a table cell broken inside, across two lines (a header squeezed to "s/e/e/d");
- whether the key-results box (`#key-results`) lies within the first screen;
- images without alt text, local links or downloads that resolve to no file, anchors that name no target;
- log noise in the text a reader sees (a log WARNING, a memory address, a traceback), on every page but
  the highlighted source of the API reference (`_modules/`), whose code names such patterns.

`search_results` runs the book's own search and returns its result pages in order (run pages rank last).

`python -m alllib.book.browser _build/html` prints the report and keeps screenshots of the landing page."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from alllib.book.report import KEY_RESULTS_ID
from alllib.errors import StudyError

# (name, width, height): the first screen of a laptop and of a large phone
WIDTHS = (("desktop", 1280, 800), ("mobile", 414, 896))
# A container that may scroll sideways on a phone, and says so (report.table_html); on a desktop
# everything fits its column
SCROLL_OK = "alllib-scroll"
PHONE = 600  # px: below this width a SCROLL_OK container may scroll
# ... and so may the theme's own table container, which book/_static/alllib.css makes say so on a phone
SCROLL_SELECTOR = f".{SCROLL_OK}, .pst-scrollable-table-container"
SOURCE_PAGES = "_modules"  # viewcode's highlighted source: code, not output, so no noise check
KEY_RESULTS = KEY_RESULTS_ID  # the landing page's box of headline numbers (report.key_results)
NOISE = (
    (r"WARNING:|\bW\d{4} \d", "a log warning"),
    (r"\b0x[0-9a-f]{8,}", "a memory address"),
    (r"Traceback \(most recent call last\)", "a traceback"),
    (r"\b\w+Warning: ", "a Python warning"),
)

# Run in the page: the elements that can be wider than the column, and the facts the checks need.
_LAYOUT_JS = r"""
const article = document.querySelector('article.bd-article') || document.body;
// a full-width cell (sphinx-book-theme's tag) may use the margin: its limit is the content area's edge
const content = document.querySelector('.bd-content') || article;
const limitOf = (el) => (el.closest('.tag_full-width') ? content : article).getBoundingClientRect().right + 1;
const out = {overflow: [], noalt: [], links: [], ids: [], text: article.innerText,
             pageWide: document.documentElement.scrollWidth > window.innerWidth + 1, key: null,
             height: window.innerHeight};
const describe = (el) => {
  const cap = el.closest('div.cell, figure, section');
  const head = cap ? (cap.querySelector('h1,h2,h3,h4,figcaption,th') || {}).innerText || '' : '';
  return el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ')[0] : '') +
         ' near "' + head.trim().slice(0, 60) + '"';
};
const wide = 'table, pre, mjx-container, .output_area, .cell_output img, figure img, .pst-scrollable-table-container';
for (const el of article.querySelectorAll(wide)) {
  if (el.closest(arguments[0])) continue;
  const r = el.getBoundingClientRect();
  const scrolls = el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible';
  const width = Math.round(Math.max(el.scrollWidth, r.width));
  if (r.right > limitOf(el) || scrolls)
    out.overflow.push(describe(el) + ' (' + width + ' px in ' + Math.round(article.clientWidth) + ' px)');
}
// a word of a table cell set on two lines, broken inside (a break after a hyphen, a slash or an
// underscore is a word's own; a cell of code, a path or a setting, may break anywhere)
out.broken = [];
for (const cell of article.querySelectorAll('table th, table td')) {
  if (cell.querySelector('code, pre')) continue;
  const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    const words = /[^\s\-\/_\u2013]+[\-\/_\u2013]?/g;
    for (let m = words.exec(node.data); m; m = words.exec(node.data)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.top)));
      if (lines.size > 1 && out.broken.length < 5)
        out.broken.push(m[0] + ' in "' + cell.innerText.trim().slice(0, 40) + '"');
    }
  }
}
for (const img of document.querySelectorAll('article img')) if (!(img.getAttribute('alt') || '').trim())
  out.noalt.push(img.getAttribute('src'));
for (const a of document.querySelectorAll('a[href]')) out.links.push(a.getAttribute('href'));
for (const el of document.querySelectorAll('[id]')) out.ids.push(el.id);
const key = document.getElementById(arguments[1]);
if (key) {
  const r = key.getBoundingClientRect();
  out.key = {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY};
}
return JSON.stringify(out);
"""


@dataclass
class PageReport:
    page: str
    width: str
    overflow: list[str] = field(default_factory=list)
    page_wider_than_window: bool = False
    key_results: dict | None = None  # top and bottom of the box in px, and the window's height
    images_without_alt: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    broken_words: list[str] = field(default_factory=list)  # a table cell's word set on two lines

    def problems(self) -> list[str]:
        where = f"{self.page} at {self.width}"
        out = [f"{where}: wider than its column: {o}" for o in self.overflow]
        if self.page_wider_than_window:
            out.append(f"{where}: the page is wider than the window")
        out += [f"{where}: image without alt text: {s}" for s in self.images_without_alt]
        out += [f"{where}: link to nothing: {h}" for h in self.broken_links]
        out += [f"{where}: log noise ({what}): {text!r}" for what, text in self.noise]
        out += [f"{where}: a word broken inside a table cell: {w}" for w in self.broken_words]
        return out


def chromium() -> tuple[str, str]:
    """The system's Chromium and chromedriver, or a StudyError saying how to install them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        raise StudyError(
            "the browser test needs Debian's chromium and chromium-driver (missing: "
            + ", ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
            + "); run tools/install_browser.sh"
        )
    return browser, driver


def start(width: int, height: int, profile_dir: Path):
    """A headless Chromium of that window size, offline: no first-run, sync, update or background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        f"--user-data-dir={profile_dir}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.set_page_load_timeout(60)
    # --window-size sizes the window, not the viewport: fix the viewport itself, as a phone's would be
    d.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    return d


def _broken(html: Path, page: Path, hrefs: list[str], ids: set[str], id_cache: dict) -> list[str]:
    """Local links of `page` (in the build at `html`) to no file, or to an anchor its target lacks."""
    out = []
    for href in dict.fromkeys(hrefs):
        u = urlparse(href)
        if u.scheme in ("http", "https", "mailto") or href.startswith("javascript:"):
            continue
        if u.scheme == "file":
            target = Path(unquote(u.path))
        elif not u.path:
            target = page
        else:
            target = (page.parent / unquote(u.path)).resolve()
        if not target.exists() or (target.is_dir() and not (target / "index.html").exists()):
            out.append(href)
            continue
        if u.fragment and target.suffix == ".html":
            if target == page:
                known = ids
            else:
                if target not in id_cache:
                    id_cache[target] = set(re.findall(r'\bid="([^"]+)"', target.read_text(errors="replace")))
                known = id_cache[target]
            if unquote(u.fragment) not in known:
                out.append(href)
    return out


def pages_of(html: Path) -> list[Path]:
    """Every page of the book a reader can open (Sphinx's own search and index pages aside)."""
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    return sorted(p for p in html.rglob("*.html") if p.name not in skip and "_static" not in p.parts)


def landing_page(html: Path) -> Path:
    return html / "book" / "intro.html"


def inspect(html: Path, pages: list[Path] | None = None, screenshots: Path | None = None) -> list[PageReport]:
    """Load every page (or `pages`) at each width of WIDTHS and report what a reader would hit; keep
    screenshots of the landing page at both widths under `screenshots`."""
    html = Path(html).resolve()
    if not (html / "index.html").is_file():
        raise StudyError(f"no built book at {html} (expected {html / 'index.html'}); run make book first")
    pages = pages_of(html) if pages is None else [Path(p).resolve() for p in pages]
    reports, id_cache = [], {}
    for name, width, height in WIDTHS:
        with tempfile.TemporaryDirectory(prefix="alllib-chromium-") as profile:
            d = start(width, height, Path(profile))
            try:
                for page in pages:
                    d.get(page.as_uri())
                    if Path(unquote(urlparse(d.current_url).path)) != page:
                        continue  # a redirect (index.html): its target is a page of its own
                    d.execute_script("return document.fonts ? document.fonts.ready.then(() => true) : true")
                    exempt = SCROLL_SELECTOR if width < PHONE else ".alllib-no-exemption"
                    facts = json.loads(d.execute_script(_LAYOUT_JS, exempt, KEY_RESULTS))
                    r = PageReport(str(page.relative_to(html)), f"{width} px")
                    r.overflow = facts["overflow"]
                    r.page_wider_than_window = facts["pageWide"]
                    if facts["key"] is not None:
                        r.key_results = {**facts["key"], "screen": facts["height"]}
                    r.images_without_alt = facts["noalt"]
                    r.broken_words = facts["broken"]
                    r.broken_links = _broken(html, page, facts["links"], set(facts["ids"]), id_cache)
                    for pattern, what in NOISE if SOURCE_PAGES not in page.relative_to(html).parts else ():
                        r.noise += [(what, m.group(0)) for m in re.finditer(pattern, facts["text"])][:3]
                    reports.append(r)
                    if screenshots is not None and page == landing_page(html):
                        screenshots.mkdir(parents=True, exist_ok=True)
                        d.save_screenshot(str(screenshots / f"landing_{name}_{width}px.png"))
            finally:
                d.quit()
    return reports


def search_results(html: Path, query: str, timeout: float = 60) -> list[str]:
    """The book's own search (Sphinx's search page and index, in the browser) for `query`: the pages it
    lists, best first, relative to `html`."""
    from selenium.webdriver.support.ui import WebDriverWait

    html = Path(html).resolve()
    with tempfile.TemporaryDirectory(prefix="alllib-chromium-") as profile:
        d = start(*WIDTHS[0][1:], Path(profile))
        try:
            d.get((html / "search.html").as_uri() + f"?q={query}")
            # Sphinx lists the results one by one and fills in the summary line when it has listed them all
            done = "const s = document.querySelector('#search-results .search-summary'); "
            done += "return !!s && !!s.innerText.trim()"
            WebDriverWait(d, timeout).until(lambda drv: drv.execute_script(done))
            hrefs = d.execute_script(
                "return [...document.querySelectorAll('#search-results ul.search > li > a')].map(a => a.href)"
            )
        finally:
            d.quit()
    pages = [Path(unquote(urlparse(h).path)).relative_to(html).as_posix() for h in hrefs]
    return list(dict.fromkeys(pages))


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m alllib.book.browser",
        description="Open a built book in headless Chromium at 1280 px and 414 px and report layout problems, "
        "missing alt text, broken links and log noise (exit 1 on any); screenshots go beside the html folder.",
    )
    parser.add_argument("html", nargs="?", default="_build/html", help="the built book's html folder")
    html = Path(parser.parse_args(argv).html)
    reports = inspect(html, screenshots=html.parent / "screenshots")
    problems = [p for r in reports for p in r.problems()]
    for r in reports:
        if r.key_results:
            k = r.key_results
            print(f"key results on {r.page} at {r.width}: {k['top']:.0f}-{k['bottom']:.0f} px of {k['screen']} px")
    print("\n".join(problems) or f"{len(reports)} page loads, no problem found")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
