"""The browser check (alllib.book.browser) finds what a reader would hit, in Debian's headless Chromium:
each kind of problem on a page made to have it, and none on a page that has none."""

from alllib.book import browser

HEAD = '<html><head><meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'

CLEAN = (
    HEAD
    + """<article class="bd-article" style="width: 360px">
<h1>Clean</h1><div id="key-results" style="height: 100px">key results</div>
<p><a href="other.html#there">a link</a> <a href="#here" id="here">an anchor</a></p>
<table><tr><td>a</td><td>b</td></tr></table><img src="x.png" alt="a picture">
<table><tr><td style="width: 40px">Inception-ResNet</td><td style="width: 20px">two words</td>
<td style="width: 30px; overflow-wrap: anywhere"><code>a_long_setting_name</code></td></tr></table>
</article></body></html>"""
)

BROKEN = (
    HEAD
    + """<article class="bd-article" style="width: 360px">
<h1>Broken</h1><div style="height: 2000px"></div><div id="key-results">key results, far below</div>
<table><tr><td style="min-width: 900px">a wide cell</td></tr></table>
<img src="x.png"><a href="missing.html">a broken link</a><a href="other.html#nowhere">a broken anchor</a>
<pre>WARNING: something at 0x7f3a2b1c9d80</pre>
<table><tr><th style="width: 12px; overflow-wrap: anywhere">seed</th><td>2</td></tr></table>
<div class="alllib-scroll"><table><tr><td style="min-width: 900px">wide, scrolls on a phone</td></tr></table></div>
</article></body></html>"""
)


def _site(tmp_path):
    (tmp_path / "index.html").write_text("<html><body>index</body></html>")
    (tmp_path / "other.html").write_text('<html><body><p id="there">there</p></body></html>')
    (tmp_path / "clean.html").write_text(CLEAN)
    (tmp_path / "broken.html").write_text(BROKEN)
    return tmp_path


def test_a_clean_page_has_no_problem_and_a_broken_one_has_each(tmp_path):
    site = _site(tmp_path)
    reports = browser.inspect(site, pages=[site / "clean.html", site / "broken.html"])
    by = {(r.page, r.width): r for r in reports}
    for width in ("1280 px", "414 px"):
        clean = by[("clean.html", width)]
        assert clean.problems() == [], clean.problems()
        assert clean.key_results["bottom"] <= clean.key_results["screen"]
        broken = by[("broken.html", width)]
        assert broken.key_results["top"] > broken.key_results["screen"]  # below the first screen
        assert broken.images_without_alt == ["x.png"]
        assert broken.broken_links == ["missing.html", "other.html#nowhere"]
        assert {what for what, _ in broken.noise} == {"a log warning", "a memory address"}
        # a header squeezed to a letter a line; a break after a hyphen or inside code is no fault (clean)
        assert broken.broken_words == ['seed in "seed"'], broken.broken_words
    # the wide table overflows at both widths; the one marked alllib-scroll only counts on a desktop
    assert len([o for o in by[("broken.html", "1280 px")].overflow if o.startswith("table")]) == 2
    assert len([o for o in by[("broken.html", "414 px")].overflow if o.startswith("table")]) == 1
