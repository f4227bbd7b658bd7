"""End to end: the smoke profile executes every notebook on tiny synthetic data and builds the
book, as `make book PROFILE=smoke EXECUTOR=submitit_local` does, in a private copy of the project:
the training runs go through submitit (its local executor standing in for Slurm: the code path of
`--executor slurm` without a cluster), and a second pass with the default local executor reuses them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_project

from alllib.rounding import fmt
from alllib.study import runner

pytestmark = pytest.mark.e2e

PAGES = runner.CHAPTERS  # every chapter of the table of contents


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    root = copy_project(tmp)
    results = tmp / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "alllib", "study", "--profile", "smoke", "--results", str(results), "--root", str(root)]
        + ["--executor", "submitit_local", "--set", "array_parallelism=2", "--set", "poll_seconds=1"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, results, proc.stdout


def test_book_has_every_chapter(built):
    root, _, _ = built
    html = root / "_build" / "html"
    assert (html / "index.html").is_file()
    for page in PAGES:
        text = (html / "book" / "_generated" / f"{page}.html").read_text()
        assert "SYNTHETIC" in text, f"{page} does not say its data is synthetic"
    card = (html / "book" / "model_card.html").read_text()
    assert "These models were trained on synthetic images and mean nothing clinically." in card
    for section in ("Model details", "Intended use", "Factors", "Metrics", "Per-class and per-subject performance"):
        assert section in card
    assert "Not a medical device. Not for diagnosis" in card and "95 % CI" in card
    runs = list((html / "book" / "_generated" / "runs").glob("*.html"))
    assert len(runs) == 15  # 5 backbones x (450 px seed 0 + 300 px seeds 0 and 1)


def test_first_page_states_data_and_profile(built):
    root, _, _ = built
    assert "book/intro.html" in (root / "_build" / "html" / "index.html").read_text()  # index.html redirects
    intro = (root / "_build" / "html" / "book" / "intro.html").read_text()
    assert "SYNTHETIC" in intro and "smoke" in intro and "fingerprint" in intro.lower()


def test_no_notebook_has_an_error_or_placeholder(built):
    root, _, _ = built
    for nb in (root / "book" / "_generated").rglob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        for cell in cells:
            for out in cell.get("outputs", []):
                assert out.get("output_type") != "error", f"{nb.name}: {out.get('ename')}: {out.get('evalue')}"
                text = json.dumps({k: v for k, v in out.items() if k != "data"} | {"data": _texts(out)})
                assert "TODO" not in text and "placeholder" not in text.lower(), nb.name
                for noise in ("cuInit", "oneDNN", "absl::InitializeLog", "cudart_stub"):
                    assert noise not in text, f"{nb.name}: TensorFlow start-up log line {noise!r} in the book"
                shown = out.get("text", "") if out.get("output_type") == "stream" else ""
                for kind in ("text/plain", "text/markdown", "text/html"):
                    shown += "".join(out.get("data", {}).get(kind, ""))
                shown = "".join(shown)
                for pattern, what in (
                    (r"WARNING:|\bW\d{4} \d", "a log warning"),
                    (r"\b0x[0-9a-f]{8,}", "a memory address"),
                    (r"Traceback \(most recent call last\)", "a traceback"),
                    (r"\w+Warning: ", "a Python warning"),
                ):
                    found = re.search(pattern, shown)
                    assert not found, (
                        f"{nb.name}: {what} on a page: {shown[max(0, found.start() - 80) : found.end() + 80]!r}"
                    )


def _texts(out) -> dict:
    """An output's text representations (a base64 image may spell anything)."""
    return {k: v for k, v in out.get("data", {}).items() if k.startswith("text/")}


def test_figures_are_rendered(built):
    """Every image a chapter page shows is a PNG of the build that opens, with a picture's size."""
    import re

    from PIL import Image

    root, _, _ = built
    html = root / "_build" / "html" / "book" / "_generated"
    shown = 0
    for page in PAGES:
        for src in re.findall(r'<img [^>]*src="([^"]+)"', (html / f"{page}.html").read_text()):
            path = (html / src).resolve()
            assert path.is_file() and path.suffix == ".png", (page, src)
            with Image.open(path) as im:
                im.verify()
                assert im.format == "PNG" and min(im.size) >= 100, (page, src, im.size)
            shown += 1
    assert shown >= 20


def test_every_figure_has_a_caption_and_alt_text(built):
    """Each image of a chapter is a figure with a caption under it and alt text that describes it
    (the kind of chart and the data label), not a hashed file name."""
    import re

    root, _, _ = built
    html = root / "_build" / "html" / "book" / "_generated"
    for page in PAGES:
        text = (html / f"{page}.html").read_text()
        images = re.findall(r"<img [^>]*>", text)
        figures = re.findall(r"<figure[^>]*>.*?</figure>", text, re.S)
        assert len(figures) == len(images), f"{page}: {len(images)} images, {len(figures)} figures"
        for fig in figures:
            alt = re.search(r'alt="([^"]*)"', fig).group(1)
            assert "SYNTHETIC" in alt and not re.fullmatch(r"[0-9a-f]{64}\.png", alt), (page, alt)
            assert "<figcaption>" in fig, page
    gradcam = (html / "05_gradcam.html").read_text()
    assert "Fig. 9:</em> The additional visualization results" in gradcam  # the paper's own caption follows ours


def test_tables_can_be_downloaded_as_the_csv_they_show(built):
    """Each table offered for download links a CSV in the build, and that CSV is the table: same
    header and rows as the table displayed in the executed notebook."""
    import csv as csvlib
    import html as html_lib
    import io
    import json
    import re

    import pandas as pd

    root, _, _ = built
    gen = root / "book" / "_generated"
    html = root / "_build" / "html"
    offered = 0
    for page in [*PAGES, *(f"runs/{p.stem}" for p in (gen / "runs").glob("*.ipynb"))]:
        nb = json.loads((gen / f"{page}.ipynb").read_text())
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        text = (html / "book" / "_generated" / f"{page}.html").read_text()
        for out in outputs:
            meta = out.get("metadata", {}).get("alllib/download")
            if not meta or not meta["file"].endswith(".csv"):
                continue
            offered += 1
            links = re.findall(r'href="([^"]*_downloads/[0-9a-f]+/' + re.escape(meta["file"]) + ')"', text)
            assert links, f"{page}: no link to {meta['file']}"
            csv = (html / "book" / "_generated" / Path(page).parent / links[0]).resolve()
            assert csv.read_text() == meta["text"]
            shown = "".join(out["data"]["text/html"]).replace("<wbr>", "")  # a header's break opportunities
            header = next(csvlib.reader(io.StringIO(meta["text"])))
            for column in filter(None, header):
                assert f">{html_lib.escape(column, quote=False)}</th>" in shown, (page, meta["file"], column)
            rows = len(pd.read_csv(csv, header=None)) - 1  # data rows, and index-name or second header lines
            assert rows <= shown.count("<tr") - 1 <= rows + 2, (page, meta["file"])
    assert offered >= 25


def test_summaries_and_runs_can_be_downloaded_as_json(built):
    import json
    import re

    root, _, _ = built
    html = root / "_build" / "html" / "book"
    summary = (html / "_generated" / "06_results_summary.html").read_text()
    for name in ("ensemble.json", "variance.json", "gradcam.json"):
        link = re.search(r'href="([^"]*_downloads/[0-9a-f]+/' + name + ')"', summary)
        assert link and json.loads((html / "_generated" / link.group(1)).resolve().read_text())["schema_version"]
    runs_page = (html / "runs.html").read_text()
    links = re.findall(r'href="([^"]*_downloads/[0-9a-f]+/[^"]+\.json)"', runs_page)
    assert len(links) == 15
    run = json.loads((html / links[0]).resolve().read_text())
    assert {"backbone", "input_size", "seed", "training", "val_accuracy"} <= set(run)


def test_reproduce_cite_and_changelog_pages(built):
    import alllib

    root, _, _ = built
    html = root / "_build" / "html" / "book"
    reproduce = _words(html / "reproduce.html")
    assert "make book PROFILE=smoke" in reproduce and "CHAPTER=03_ensemble_ablation" in reproduce
    assert "alllib verify /path/to/C-NMC_Leukemia --full" in reproduce
    assert "lists 15,114 images, 10.4 GB" in reproduce  # from the manifest, not typed into the page
    cite = (html / "cite.html").read_text()
    assert "https://doi.org/10.1016/j.imu.2021.100794" in cite and "https://doi.org/10.7937/tcia.2019.dc64i46r" in cite
    assert f"version {alllib.__version__}" in cite
    assert f"{alllib.__version__}" in (html / "changelog.html").read_text()
    assert f"alllib {alllib.__version__}" in _words(html / "intro.html")


def _words(page) -> str:
    """A page's text as a reader sees it: tags dropped, white space collapsed."""
    import re

    return " ".join(re.sub(r"<[^>]+>", "", page.read_text()).split())


def test_each_step_of_section_4_links_to_its_api_entry_and_source(built):
    """The method notes' table (alllib.SECTION_4) links each step to its autodoc entry on the API page, and
    that entry and the table to the function's highlighted source (viewcode)."""
    import alllib

    root, _, _ = built
    html = root / "_build" / "html"
    api = (html / "book" / "api.html").read_text()
    method = (html / "book" / "method.html").read_text()
    for _, _, where in alllib.SECTION_4:
        module, name = where.split(":")
        assert f'id="{module}.{name}"' in api, f"no API entry for {where}"
        assert f'href="api.html#{module}.{name}"' in method, f"the method notes do not link {where}"
        source = f"_modules/{module.replace('.', '/')}.html"
        assert f'href="../{source}#{name}"' in method and f'id="{name}"' in (html / source).read_text(), where


def test_the_engineering_appendix_says_where_the_study_s_time_went(built):
    """study.json records each phase of the build from the process's start to the built book; the appendix
    shows them, the book build among them, adding up to the recorded total."""
    from alllib.book import pages

    root, results, _ = built
    record = json.loads((results / "smoke" / "study.json").read_text())
    phases, total = record["phases"], record["process_seconds"]
    assert {pages.STARTUP, pages.DATA, pages.CHECK, pages.TRAINING, pages.BUILD} <= set(phases)
    assert pages.chapter_phase(runner.DATA_NOTEBOOK) in phases and pages.analysis_phase(2) in phases  # smoke: jobs 2
    assert list(record["chapters"]) == list(runner.ANALYSIS_NOTEBOOKS)  # each chapter's own time beside their wall time
    assert sum(record["chapters"].values()) > phases[pages.analysis_phase(2)]  # side by side: they overlapped
    assert 0.9 * total <= sum(phases.values()) <= total
    page = _words(root / "_build" / "html" / "book" / "_generated" / "07_engineering.html")
    assert "time goes (this build)" in page and pages.BUILD in page and "being measured" not in page
    assert f"to the built book: {fmt(total / 60, 1)} min" in page


def test_runs_are_grouped_by_size_in_the_sidebar(built):
    root, _, _ = built
    html = root / "_build" / "html" / "book"
    for size in (450, 300):
        page = (html / f"runs_{size}.html").read_text()
        assert f"Runs at {size} px" in page and f"{size} px · seed" in page


def test_mathjax_is_served_offline(built):
    """MathJax 3 and its TeX fonts come with the build (sphinx-mathjax-offline); no page asks a CDN."""
    root, _, _ = built
    html = root / "_build" / "html"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    fonts = html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert (fonts / "MathJax_Math-Italic.woff").is_file()  # TeX's italic variables, not a fallback font
    page = (html / "book" / "method.html").read_text()
    assert "mathjax/tex-chtml.js" in page and "cdn.jsdelivr.net/npm/mathjax" not in page


def test_book_builds_without_broken_references(built):
    """Sphinx resolves every doc link of the generated pages (run links, downloads): a link Sphinx cannot
    resolve renders as plain text, so its warning is the broken link."""
    root, _, _ = built
    log = (root / "_build" / "jupyter-book.log").read_text()
    broken = [line for line in log.splitlines() if "xref_missing" in line or "download file not readable" in line]
    assert not broken, "\n".join(broken[:5])


def test_second_run_trains_nothing(built):
    root, results, _ = built
    from alllib.study import prepare as study_mod
    from alllib.study import runner

    s = study_mod.prepare("smoke", results_dir=results, progress=False)
    counts = runner.run_matrix(s, runner.notebook_params(s, "smoke"), root, [], None)
    assert counts == {"trained": 0, "reused": 15}  # trained through submitit, reused by the local executor
    runs = s.runs()
    assert {r.executor["kind"] for r in runs} == {"submitit_local"}
    assert all(r.training.run_eagerly and r.epochs_run == 2 for r in runs)  # smoke: eager, two epochs
    assert {r.split_seed for r in runs} == {0}  # split: fixed, the paper's single Table 3 split


def test_summaries_follow_the_contract(built):
    _, results, _ = built
    from alllib.results import summaries

    analysis = results / "smoke" / "analysis"
    ens = summaries.read(summaries.EnsembleSummary, analysis)
    assert set(ens.sizes) == {450, 300} and ens.test_subjects > 1
    c = ens.sizes[300].comparison
    assert c.subjects == ens.test_subjects and 0 <= c.p_BA_holm <= 1 and c.p_BA_holm >= c.p_BA_permutation
    var = summaries.read(summaries.VarianceSummary, analysis)
    assert var.split == "fixed" and var.seeds == [0, 1]
    cam = summaries.read(summaries.GradcamSummary, analysis)
    assert cam.images > 0 and set(cam.more_concentrated_than) <= set(cam.models)


def test_results_summary_uses_the_subject_level_tests(built):
    root, _, _ = built
    text = (root / "_build" / "html" / "book" / "_generated" / "06_results_summary.html").read_text()
    assert "subject sign-flip permutation test" in text and "test subjects" in text
    assert "per-image tests overstate the evidence" in text
    assert "Holm-adjusted within its family of tests" in text and "intervals are each comparison\u2019s own" in text
    assert "as the paper does, makes WEN-kappa\u2019s BA" in text or "WEN-kappa\u2019s BA unchanged" in text


def test_run_pages_are_titled_by_their_run_and_listed(built):
    import re

    root, _, _ = built
    html = root / "_build" / "html" / "book"
    titles = [
        re.search(r"<title>([^<]*?) &#8212;", p.read_text()).group(1)
        for p in (html / "_generated" / "runs").glob("*.html")
    ]
    assert len(titles) == 15 and len(set(titles)) == 15, titles
    assert all(re.fullmatch(r"[\w\-]+ · (450|300) px · seed \d", t) for t in titles), titles
    runs_page = (html / "runs.html").read_text()
    assert runs_page.count("_generated/runs/") >= 15 and "validation BA" in runs_page
    page = next((html / "_generated" / "runs").glob("*.html")).read_text()
    assert "<strong>random initialisation</strong>" in page and "predicted (count, % of the true class)" in page
    assert re.search(r"<td>\d+ \(\d+\.\d %\)</td>", page), "the confusion matrix shows no shares"


def test_no_absolute_local_path_in_the_book(built):
    root, results, _ = built
    for page in (root / "_build" / "html").rglob("*.html"):
        text = page.read_text()
        assert str(results) not in text and str(root) not in text, f"{page.name} shows a local path"


def test_a_real_browser_finds_every_page_readable(built):
    """Debian's Chromium, headless, opens every built page at 1280 px and at 414 px (alllib.book.browser):
    nothing wider than its column (on a phone a results table may scroll, and says so), the key results
    within the landing page's first screen at both widths, alt text on every image, every local link and
    anchor resolving, and no log noise. The landing page's screenshots are kept beside the build."""
    from alllib.book import browser

    root, _, _ = built
    html = root / "_build" / "html"
    shots = root / "_build" / "screenshots"
    reports = browser.inspect(html, screenshots=shots)
    assert {r.width for r in reports} == {f"{w} px" for _, w, _ in browser.WIDTHS}
    landing = [r for r in reports if r.page == "book/intro.html"]
    assert len(landing) == 2
    for r in landing:
        k = r.key_results
        assert k is not None, f"no key-results box on the landing page at {r.width}"
        assert k["bottom"] <= k["screen"], f"the key results end at {k['bottom']:.0f} px, below the first screen"
    problems = [p for r in reports for p in r.problems()]
    assert not problems, f"{len(problems)} problems, first:\n" + "\n".join(problems[:15])
    assert sorted(p.name for p in shots.glob("*.png")) == ["landing_desktop_1280px.png", "landing_mobile_414px.png"]


def test_the_book_s_search_lists_the_chapters_before_the_run_pages(built):
    """Every run page names kappa: the book's search (its scorer, book/_static/search_scorer.js) ranks every
    other page that matches before the first run page, and the run pages stay findable."""
    from alllib.book import browser

    root, _, _ = built
    found = browser.search_results(root / "_build" / "html", "kappa")
    runs = [i for i, p in enumerate(found) if p.startswith("book/_generated/runs/")]
    assert runs and found[: len(found) - len(runs)] == [p for p in found if not p.startswith("book/_generated/runs/")]
    assert "book/_generated/03_ensemble_ablation.html" in found[: runs[0]], found[:10]
