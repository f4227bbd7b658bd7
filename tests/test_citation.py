"""CITATION.cff is the one source of the study's version and references; the package, the project
metadata and the changelog agree with it."""

import re

import yaml
from conftest import ROOT

import alllib
from alllib.book import pages as book


def test_versions_agree():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    pyproject = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert cff["version"] == alllib.__version__ == pyproject
    assert f"## {alllib.__version__} " in (ROOT / "CHANGELOG.md").read_text()


def test_references_have_the_dois_and_the_cite_page_shows_them():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    paper, data = cff["references"]
    assert paper["doi"] == "10.1016/j.imu.2021.100794" and paper["journal"] == "Informatics in Medicine Unlocked"
    assert [a["family-names"] for a in paper["authors"]][:2] == ["Mondal", "Hasan"]
    assert data["doi"] == "10.7937/tcia.2019.dc64i46r" and data["license"] == "CC-BY-3.0"
    page = book.cite_markdown("abc1234")
    for doi in (paper["doi"], data["doi"]):
        assert f"(https://doi.org/{doi})" in page and f"doi = {{{doi}}}" in page
    assert f"version {alllib.__version__} (git commit `abc1234`)" in page


def test_paper_title_is_the_one_the_shared_text_carries():
    from conftest import SHARED

    text = SHARED / "paper" / "000_7904261b651e63fc.txt"
    if not text.exists():
        import pytest

        pytest.skip("shared/paper not present")
    title = yaml.safe_load((ROOT / "CITATION.cff").read_text())["references"][0]["title"]
    assert title.lower() in text.read_text().lower()


def test_the_repository_is_one_setting_the_pages_link_to(monkeypatch):
    """CITATION.cff's repository-code, when set, becomes a link with the build's commit on the How-to-cite and
    Reproduce pages; unset (this copy), the pages say so and name the setting instead of inventing an address."""
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    unset = book.cite_markdown("abc1234")
    if "repository-code" not in cff:
        assert "names no public repository" in unset and "`repository-code` in `CITATION.cff`" in unset
    monkeypatch.setattr(book, "citation", lambda: {**cff, "repository-code": "https://example.org/all-study/"})
    page = book.cite_markdown("abc1234")
    assert "[https://example.org/all-study](https://example.org/all-study)" in page
    assert "[`abc1234`](https://example.org/all-study/tree/abc1234)" in page and "names no public" not in page
