"""The contract between the chapters: what the ensemble, variance and Grad-CAM chapters hand to the
results summary. Library functions build these typed summaries from the run's artifacts; the
chapters write them (`write`) and the summary reads them (`read`), checking the schema version, so
no key is defined by a notebook cell."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from alllib import io
from alllib.errors import StudyError

SCHEMA_VERSION = 3


class _Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    label: str


class Estimate(BaseModel):
    """A metric with its 95 % subject-bootstrap CI."""

    est: float
    lo: float
    hi: float


class _Paired(BaseModel):
    """An ensemble minus a reference on the same test images, the subject as the unit
    (`stats.compare_subject_level`): the differences in BA and AUC with their paired CIs."""

    ensemble: str
    reference: str
    subjects: int
    images: int
    dBA: Estimate
    dAUC: Estimate


class Comparison(_Paired):
    """WEN-kappa (leak-free weights) against the single model validation picks."""

    p_BA_permutation: float
    p_AUC_permutation: float
    p_BA_bootstrap: float
    p_AUC_bootstrap: float
    p_BA_holm: float  # Holm over the headline's family: BA and AUC at every input size
    p_AUC_holm: float
    p_McNemar_per_image: float  # treats images as independent: secondary
    p_DeLong_per_image: float


class EceDifference(BaseModel):
    """The second model's ECE minus the first's, the subject as the unit."""

    first: str
    second: str
    dECE: Estimate
    p_permutation: float


class FamilyTest(_Paired):
    """One comparison of a family (`results.baselines`), its p-values Holm-adjusted over the family."""

    comparison: str
    p_BA: float  # subject sign-flip permutation
    p_AUC: float
    p_BA_holm: float
    p_AUC_holm: float

    @classmethod
    def rows(cls, table) -> list[FamilyTest]:
        """A `baselines.baseline_family` or `crop_comparison` table as typed rows."""
        return [
            cls(
                **{
                    k: r[k] for k in ("comparison", "ensemble", "reference", "p_BA", "p_AUC", "p_BA_holm", "p_AUC_holm")
                },
                subjects=int(r["subjects"]),
                images=int(r["images"]),
                **{f"d{m}": Estimate(est=r[f"d{m}"], lo=r[f"d{m}_lo"], hi=r[f"d{m}_hi"]) for m in ("BA", "AUC")},
            )
            for r in table.to_dict("records")
        ]


class Baselines(BaseModel):
    """The ensemble against its baselines at the crop size and first seed (one Holm family), and the
    gain of WEN-kappa over equal weights at every seed of that size."""

    size: int
    seed: int
    tests: list[FamilyTest]
    gain_per_seed: list[dict[str, float]]  # {seed, dBA_pp, dAUC_pp}: WEN-kappa minus the soft vote


class Crop(BaseModel):
    """The 300 px crop against the 450 px image for the same seed (one Holm family), and how many
    seeds each size was trained with."""

    seed: int
    seeds_at: dict[int, int]
    tests: list[FamilyTest]


class SizeResult(BaseModel):
    size: int
    best_single: str
    leak_free: dict[str, dict[str, Estimate]]  # classifier -> metric -> estimate (validation weights)
    paper_faithful: dict[str, dict[str, Estimate]]  # classifier -> metric -> estimate (test weights, as the paper)
    comparison: Comparison
    weight_gap_BA_pp: dict[str, float]  # WEN: BA with test weights minus BA with validation weights


class EnsembleSummary(_Summary):
    seed: int
    test_images: int
    test_subjects: int
    bootstrap: int  # subject-bootstrap resamples behind every interval
    sizes: dict[int, SizeResult]
    ece: dict[str, Estimate]  # expected calibration error with its 95 % subject-bootstrap CI
    ece_bins: int  # equal-width bins on p(ALL)
    ece_difference: EceDifference | None
    temperatures: dict[str, float]  # temperature scaling: each member's temperature, fitted on validation
    error_concentration: dict[str, float]
    ablation_seconds: float
    baselines: Baselines
    crop: Crop | None  # None unless both sizes were trained


class VarianceSummary(_Summary):
    size: int
    seeds: list[int]
    split: str
    weights_from: str
    table: list[dict]


class GradcamSummary(_Summary):
    method: str
    images: int
    subjects: int
    sample_seed: int
    models: list[str]
    models_without_maps: list[str]
    more_concentrated_than: list[str]  # single models whose maps hold significantly less energy in the cell
    less_concentrated_than: list[str]  # ... significantly more
    paired: list[dict]


FILES = {EnsembleSummary: "ensemble.json", VarianceSummary: "variance.json", GradcamSummary: "gradcam.json"}
WRITTEN_BY = {  # the chapter notebook that writes each (tests/test_faults.py checks the notebooks do)
    EnsembleSummary: "03_ensemble_ablation",
    VarianceSummary: "04_variance",
    GradcamSummary: "05_gradcam",
}
READ_BY = {  # the chapters that read each: the study runner starts them only after its writer has finished
    EnsembleSummary: ("06_results_summary", "09_comparison"),
    VarianceSummary: ("06_results_summary",),
    GradcamSummary: ("06_results_summary",),
}  # tests/test_scheduling.py holds this against the notebooks' own summaries.read calls


def chapter_needs() -> dict[str, set[str]]:
    """Chapter -> the chapters whose summaries it reads (what it waits for when chapters run side by side)."""
    needs: dict[str, set[str]] = {}
    for kind, readers in READ_BY.items():
        for chapter in readers:
            needs.setdefault(chapter, set()).add(WRITTEN_BY[kind])
    return needs


# what the results summary offers for download, and how it names each
OFFERED = {
    EnsembleSummary: "the ensemble chapter's summary (JSON: every estimate with its CI, the comparisons)",
    VarianceSummary: "the five-run chapter's summary (JSON)",
    GradcamSummary: "the Grad-CAM chapter's summary (JSON: the concentration tests)",
}


def path_of(kind: type[_Summary], analysis_dir) -> Path:
    return Path(analysis_dir) / FILES[kind]


def write(summary: _Summary, analysis_dir) -> Path:
    path = path_of(type(summary), analysis_dir)
    io.write_text(path, summary.model_dump_json(indent=2) + "\n")
    return path


def read(kind: type[_Summary], analysis_dir):
    path = path_of(kind, analysis_dir)
    if not path.is_file():
        raise StudyError(f"{path} is missing: run the chapter that writes it first (make book runs them in order)")
    data = io.read_json(path, f"run the chapter that writes it again (make book CHAPTER={WRITTEN_BY[kind]})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise StudyError(
            f"{path} has schema version {data.get('schema_version')}, this code reads {SCHEMA_VERSION}: "
            "rebuild with `make book`"
        )
    return kind.model_validate(data)
