"""An executed notebook made into a book page, in one pass, outputs untouched (`for_the_book`):

- papermill's injected cell (this build's parameters, with local paths) is removed from the page; a run
  page states its backbone, size, seed and run id in its header instead, and takes its run's title;
- a run page's training log (the Keras progress its first cell prints before the run's header) moves to
  a section of its own at the page's end, so the page opens with the run, not with its log;
- a cell that shows a table of many columns (report.show_table) takes the page's full width;
- each figure shown by `figures.show` gets a code cell of its own whose MyST-NB metadata makes it a
  figure: the caption under it, the alt text on the image, a target named after the page and the figure;
- each file an output offers (report.show_table's CSV, report.offer's JSON) is written to
  `downloads/<page>/<file>` under the generated pages and linked right after that output.

Idempotent: a page made once is left as it is when it is made again.
"""

from __future__ import annotations

import json
from pathlib import Path

from alllib import io
from alllib.book.figures import FIGURE_META
from alllib.book.report import DOWNLOAD_META, DOWNLOADS


def for_the_book(path: Path, gen: Path, title: str | None = None, page: str | None = None) -> list[Path]:
    """Make the executed notebook `path` (under the generated pages `gen`) a book page: see the module
    note. `title` replaces its first heading; `page` names its figure targets and its downloads folder
    (default: the file's stem). Returns the download files written."""
    page = page or path.stem
    nb = json.loads(path.read_text())
    if title is not None:
        _retitle(nb, title)
        _log_last(nb)
    cells, written = [], []
    for cell in nb["cells"]:
        _tag_cell(cell)
        written += _link_downloads(cell, gen, page)
        cells += _split_figures(cell, page)
    nb["cells"] = cells
    io.write_text(path, json.dumps(nb, indent=1))
    return written


def _retitle(nb: dict, title: str) -> None:
    """The notebook's first heading becomes `title` (each run page is titled by its run)."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = "".join(cell["source"]).split("\n", 1)
            if src[0].startswith("# "):
                cell["source"] = f"# {title}\n" + (src[1] if len(src) > 1 else "")
            return


LOG_HEADING = "## Training log"
LOG_NOTE = (
    "What the run printed while it trained (Keras' progress, one line per epoch), moved here from its first cell."
)


def _log_last(nb: dict) -> None:
    """The stream outputs (stdout, stderr) of the first code cell that also displays something (a run page:
    the cell that trains and then shows the run's header) move, in order, to a section at the page's end."""
    for cell in nb["cells"]:
        outputs = cell.get("outputs", [])
        if cell["cell_type"] != "code" or not any(o["output_type"] == "display_data" for o in outputs):
            continue
        log = [o for o in outputs if o["output_type"] == "stream"]
        if not log:
            return
        cell["outputs"] = [o for o in outputs if o["output_type"] != "stream"]
        nb["cells"] += [
            {"cell_type": "markdown", "id": "training-log", "metadata": {}, "source": f"{LOG_HEADING}\n\n{LOG_NOTE}\n"},
            {
                "cell_type": "code",
                "id": "training-log-output",
                "execution_count": None,
                "metadata": {"tags": ["remove-input"]},
                "outputs": log,
                "source": "",
            },
        ]
        return


def _tag_cell(cell: dict) -> None:
    tags = cell.get("metadata", {}).get("tags", [])
    if "injected-parameters" in tags and "remove-cell" not in tags:
        cell["metadata"]["tags"] = tags = tags + ["remove-cell"]
    outputs = cell.get("outputs", [])
    if any(o.get("metadata", {}).get(DOWNLOAD_META, {}).get("wide") for o in outputs) and "full-width" not in tags:
        cell["metadata"]["tags"] = tags + ["full-width"]  # a table of many columns


def _link_downloads(cell: dict, gen: Path, page: str) -> list[Path]:
    """Write each file an output of `cell` offers and put a link to it after that output."""
    if "outputs" not in cell:
        return []
    outputs, written = [], []
    for out in cell["outputs"]:
        outputs.append(out)
        meta = out.get("metadata", {}).get(DOWNLOAD_META)
        if meta is None or meta.get("linked"):
            continue
        target = gen / DOWNLOADS / page / meta["file"]
        io.write_text(target, meta["text"])
        written.append(target)
        meta["linked"] = True
        link = download_link(target, gen.parent.parent, meta["file"])
        data = {"text/markdown": f"Download {meta['what']}: {link}", "text/plain": meta["file"]}
        if meta.get("replace"):  # a file offered on its own (report.offer): the link is the output
            out["data"] = data
            continue
        outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    cell["outputs"] = outputs
    return written


def download_link(path: Path, root: Path, text: str) -> str:
    """A MyST download link to a file under the book's source root (Sphinx copies it into the build)."""
    return f"{{download}}`{text} </{Path(path).resolve().relative_to(Path(root).resolve()).as_posix()}>`"


def _split_figures(cell: dict, page: str) -> list[dict]:
    """`cell`, and a cell of its own for each figure among its outputs (and for the outputs after it)."""
    outputs = cell.get("outputs", [])
    if "mystnb" in cell.get("metadata", {}) or not any(FIGURE_META in o.get("metadata", {}) for o in outputs):
        return [cell]  # no figure, or a figure cell made already
    current = dict(cell, outputs=[])  # the cell keeps its source and the outputs before its first figure
    cells = [current]
    for k, out in enumerate(outputs):
        meta = out.get("metadata", {}).get(FIGURE_META)
        if meta is None:
            if current is None:  # outputs after a figure: a cell of their own, made when one comes
                current = _output_cell(cell, f"{k}-after", [], {}, "# outputs of the cell above, after its figure")
                cells.append(current)
            current["outputs"].append(out)
            continue
        figure = {"caption": meta["caption"], "name": f"fig-{page}-{meta['name']}".replace("_", "-")}
        mystnb = {"figure": figure, "image": {"alt": meta["alt"]}}
        fig_cell = _output_cell(cell, k, [out], mystnb, f"# figure {meta['name']}, shown by the cell above")
        if meta.get("wide"):
            fig_cell["metadata"]["tags"].append("full-width")
        cells.append(fig_cell)
        current = None
    return cells


def _output_cell(cell: dict, key, outputs: list, mystnb: dict, comment: str) -> dict:
    """A code cell that holds outputs split off `cell`; its source is a comment (MyST-NB skips a cell
    without source) that the page does not show."""
    meta = {"tags": ["remove-input"], **({"mystnb": mystnb} if mystnb else {})}
    new = {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": outputs, "source": comment}
    new["id"] = f"{cell.get('id', 'cell')}-{key}"
    return new
