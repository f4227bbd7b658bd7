"""The book's plumbing: figures carry a caption and alt text, and the runner turns them into MyST
figures of their own cells."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from alllib import pipeline
from alllib.book import (
    figures,  # noqa: E402
    postprocess,
)


def _figure_output(monkeypatch, name="fig5_roc", **facts):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, metadata=None: shown.append((obj, metadata)))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title("(a) 450 x 450 px")
    ax.set_xlabel("false positive rate")
    figures.stamp(fig, "SYNTHETIC C-NMC-like data | profile smoke")
    figures.show(fig, name, **facts)
    ((obj, metadata),) = shown
    return obj, metadata[figures.FIGURE_META]


def test_show_gives_caption_alt_text_and_the_papers_figure(monkeypatch):
    image, meta = _figure_output(monkeypatch)
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert meta["caption"].startswith("**Our Fig. 5.** ROC curves of the five models")  # the paper's number only
    assert "*The paper's Fig. 5:* The ROC curves of five different CNN models" in meta["caption"]
    assert meta["alt"].startswith("ROC curves, one panel per input size.")
    assert "(a) 450 x 450 px (x: false positive rate)" in meta["alt"]
    assert meta["alt"].endswith("Data: SYNTHETIC C-NMC-like data | profile smoke.")
    assert meta["wide"] is False  # matplotlib's default 6.4 in


def test_caption_facts_are_filled_and_checked():
    assert figures.caption("per_subject", subjects=28).startswith(
        "Accuracy of WEN-kappa (validation weights) on each of the 28"
    )
    with pytest.raises(KeyError, match="subjects"):
        figures.caption("per_subject")
    with pytest.raises(KeyError, match="no caption for figure 'nope'"):
        figures.caption("nope")


def test_every_caption_formats_and_every_paper_figure_is_answered():
    import string

    numbers = set()
    for name, (_kind, text, number) in figures.CAPTIONS.items():
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        assert figures.caption(name, **dict.fromkeys(fields, "X"))
        numbers.add(number)
    assert {2, 3, 4, 5, 6, 7, 8, 9, 10} <= numbers  # the paper's figures that the book must show


def _notebook(outputs):
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell("profile = 'x'")
    injected.metadata["tags"] = ["injected-parameters"]
    cell = nbformat.v4.new_code_cell("draw()")
    cell.metadata["tags"] = ["hide-input"]
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    nb.cells = [injected, cell, nbformat.v4.new_markdown_cell("text")]
    return nb


def test_for_the_book_gives_each_figure_a_cell_of_its_own(tmp_path, monkeypatch):
    image, meta = _figure_output(monkeypatch)
    fig_out = {
        "output_type": "display_data",
        "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Image>"},
        "metadata": {figures.FIGURE_META: meta},
    }
    text_out = {"output_type": "display_data", "data": {"text/markdown": "a sentence"}, "metadata": {}}
    stream = {"output_type": "stream", "name": "stdout", "text": "progress\n"}
    wide = json.loads(json.dumps(fig_out))
    wide["metadata"][figures.FIGURE_META]["wide"] = True
    path = tmp_path / "05_gradcam.ipynb"
    nbformat.write(_notebook([stream, fig_out, text_out, wide]), path)
    postprocess.for_the_book(path, tmp_path, page="05_gradcam")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    injected, source, fig1, after, fig2, markdown = nb.cells
    assert "remove-cell" in injected.metadata["tags"]
    assert source.source == "draw()" and [o["output_type"] for o in source.outputs] == ["stream"]
    assert fig1.metadata["tags"] == ["remove-input"] and fig2.metadata["tags"] == ["remove-input", "full-width"]
    for fig in (fig1, fig2):
        assert fig.source.startswith("# figure fig5_roc")
        assert fig.metadata["mystnb"]["figure"] == {"caption": meta["caption"], "name": "fig-05-gradcam-fig5-roc"}
        assert fig.metadata["mystnb"]["image"] == {"alt": meta["alt"]}
        assert len(fig.outputs) == 1 and "image/png" in fig.outputs[0]["data"]
    assert after.outputs[0]["data"]["text/markdown"] == "a sentence" and "mystnb" not in after.metadata
    assert markdown.cell_type == "markdown"
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def test_for_the_book_leaves_a_notebook_without_figures_as_it_was(tmp_path):
    path = tmp_path / "x.ipynb"
    nb = _notebook([{"output_type": "stream", "name": "stdout", "text": "hi\n"}])
    nbformat.write(nb, path)
    postprocess.for_the_book(path, tmp_path)
    out = json.loads(path.read_text())
    assert len(out["cells"]) == 3 and "".join(out["cells"][1]["outputs"][0]["text"]) == "hi\n"


def test_a_run_page_opens_with_its_run_and_ends_with_its_training_log(tmp_path):
    """The Keras log printed before the run's header moves, in order, to a section at the page's end;
    making the page again changes nothing."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Fine-tuning one backbone\n\ntext"), nbformat.v4.new_code_cell("train")]
    nb.cells[1].outputs = [
        nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "Epoch 1/2\n"}),
        nbformat.from_dict({"output_type": "display_data", "data": {"text/markdown": "## VGG-16"}, "metadata": {}}),
        nbformat.from_dict({"output_type": "stream", "name": "stderr", "text": "Epoch 2/2\n"}),
    ]
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    postprocess.for_the_book(path, tmp_path, title="VGG-16 · 300 px · seed 0")
    once = path.read_text()
    out = nbformat.read(path, as_version=4)
    assert out.cells[0].source.startswith("# VGG-16 · 300 px · seed 0")
    assert [o["output_type"] for o in out.cells[1].outputs] == ["display_data"]
    assert out.cells[-2].source.startswith(postprocess.LOG_HEADING)
    assert ["".join(o["text"]) for o in out.cells[-1].outputs] == ["Epoch 1/2\n", "Epoch 2/2\n"]
    nbformat.validate(out)
    postprocess.for_the_book(path, tmp_path, title="VGG-16 · 300 px · seed 0")
    assert path.read_text() == once


def test_only_names_the_chapters_and_needs_the_others_built(tmp_path):
    from alllib.errors import ConfigError, StudyError

    with pytest.raises(ConfigError, match="unknown chapter.*03_ensemble_ablation"):
        pipeline.run_study("smoke", only=["03_ensemble"], root=tmp_path)
    with pytest.raises(StudyError, match="01_data_exploration.*never executed.*make book"):
        pipeline.run_study("smoke", only=["03_ensemble_ablation"], root=tmp_path, results_dir=tmp_path / "results")


def test_downloads_are_written_once_and_linked_after_their_output(tmp_path):
    from alllib.book import report

    gen = tmp_path / "book" / "_generated"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()")
    meta = {report.DOWNLOAD_META: {"file": "table4.csv", "text": "a,b\n1,2\n", "what": "this table as CSV"}}
    cell.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {"text/html": "<table/>"}, "metadata": meta})
    ]
    nb.cells = [cell]
    nbformat.write(nb, gen.mkdir(parents=True) or gen / "03_x.ipynb")
    assert postprocess.for_the_book(gen / "03_x.ipynb", gen) == [gen / "downloads" / "03_x" / "table4.csv"]
    assert postprocess.for_the_book(gen / "03_x.ipynb", gen) == []  # already linked
    out = nbformat.read(gen / "03_x.ipynb", as_version=4).cells[0].outputs
    assert (gen / "downloads" / "03_x" / "table4.csv").read_text() == "a,b\n1,2\n"
    assert len(out) == 2 and out[1]["data"]["text/markdown"] == (
        "Download this table as CSV: {download}`table4.csv </book/_generated/downloads/03_x/table4.csv>`"
    )


def test_a_results_table_names_its_data_and_drops_only_pandas_own_index():
    import pandas as pd

    from alllib.book import report

    plain = pd.DataFrame({"classifier": ["A", "B"], "BA": [0.5, 0.75], "n": [30.0, 12.0]})
    html = report.table_html(plain, "SYNTHETIC C-NMC-like data | profile smoke")
    assert '<caption class="data-label data-synthetic">SYNTHETIC C-NMC-like data | profile smoke</caption>' in html
    assert "<th>0</th>" not in html and ">classifier</th>" in html  # pandas' 0, 1 are not shown
    assert "<td>30</td>" in html and "30.0" not in html  # a count prints as an integer
    assert "<td>0.50</td>" in html or "<td>0.5</td>" in html  # a metric stays a float
    seeds = pd.DataFrame({"seed": [0, 1], "dBA_pp": [1.5, -0.5]}).set_index("seed")  # a RangeIndex with a name
    assert ">seed</th>" in report.table_html(seeds, "") and "<caption" not in report.table_html(seeds, "")
    # a header may break after its underscores, nowhere else; a cell keeps its text as it is
    wide = report.table_html(pd.DataFrame({"images_per_second": ["a_b"]}), "")
    assert ">images_<wbr>per_<wbr>second</th>" in wide and "<td>a_b</td>" in wide


def test_the_study_phases_add_up_to_the_measured_total():
    from alllib.book import pages

    seconds = {pages.STARTUP: 4.0, pages.DATA: 30.0, pages.TRAINING: 600.0, pages.BUILD: 60.0}
    table = pages.study_phases_markdown(seconds, 700.0, None)
    rows = {
        cells[1].strip(): float(cells[2].strip("* "))
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| phase")
        for cells in [line.split("|")]
    }
    assert rows[pages.BETWEEN] == 6.0  # what no phase holds has its own row
    assert sum(v for k, v in rows.items() if k != "**all**") == rows["**all**"] == 700.0
    assert "**11.7 min**" in table and "| 85.7% |" in table  # 600 of 700 s
    building = pages.study_phases_markdown(seconds, None, ["06_results_summary"])
    assert pages.BETWEEN not in building and "being measured" in building and "`06_results_summary`" in building


def test_the_run_matrix_place_seconds_split_into_kernels_around_them_and_idle():
    from alllib.book import pages

    timed = {"slots": 2, "runs": {"a": 45.0, "b": 40.0}}  # the runner's seconds per run
    table = pages.matrix_markdown(timed, 100.0, {"a": 40.0, "b": 36.0, "reused": 99.0})  # run.json's walls
    rows = {
        cells[1].strip(): float(cells[2].strip("* "))
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| place-seconds")
        for cells in [line.split("|")]
    }
    assert rows[pages.MATRIX_KERNELS] == 76.0 and rows[pages.MATRIX_AROUND] == 9.0  # 85 - 76; the reused run is out
    assert rows[pages.MATRIX_IDLE] == 115.0 and rows["**all**"] == 200.0 == sum(list(rows.values())[:3])
    assert "(4.5 s per run)" in table and "for the 2 runs" in table
    assert pages.matrix_markdown({"slots": 2, "runs": {}}, 100.0, {}) == ""  # every run reused: no table
    assert pages.matrix_markdown({}, 0.0, {}) == ""  # runs submitted as jobs
