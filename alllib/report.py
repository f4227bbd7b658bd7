"""The results summary: one paragraph generated from the numbers the analysis notebooks saved."""
from __future__ import annotations

from .models import DISPLAY_ORDER


def _ci(row: dict, k: str) -> str:
    return f"{row[k]:.3f} [{row[k + '_lo']:.3f}, {row[k + '_hi']:.3f}]"


def _p(p: float) -> str:
    return "n/a" if p != p else (f"{p:.3f}" if p >= 0.001 else "< 0.001")


def headline(ens: dict, var: dict, cam: dict, study) -> str:
    parts = [f"**Data and profile:** {ens['label']} (data fingerprint `{study.data_info['fingerprint']}`)."]
    if study.synthetic:
        parts.append("These are synthetic images: the numbers show that the pipeline works end to end, not how well "
                     "CNNs diagnose ALL.")
    for size in sorted(ens["sizes"], key=int, reverse=True):
        s = ens["sizes"][size]
        if "best_single" not in s:
            continue
        best, t = s["best_single"], s["table"]
        sig = s["significance"].get("WEN-kappa", {})
        d_ba = (t["WEN-kappa"]["BA"] - t[best]["BA"]) * 100
        d_auc = (t["WEN-kappa"]["AUC"] - t[best]["AUC"]) * 100
        p_acc, p_auc = sig.get("McNemar p", float("nan")), sig.get("DeLong p", float("nan"))
        parts.append(
            f"**{size} px:** the best single model on validation was **{best}** (test BA {_ci(t[best], 'BA')}, "
            f"AUC {_ci(t[best], 'AUC')}). WEN-kappa with leak-free weights reached BA {_ci(t['WEN-kappa'], 'BA')} and "
            f"AUC {_ci(t['WEN-kappa'], 'AUC')}: {abs(d_ba):.1f} points {'higher' if d_ba > 0 else 'lower'} in BA and "
            f"{abs(d_auc):.1f} points {'higher' if d_auc > 0 else 'lower'} in AUC. The accuracy difference is "
            f"{'' if p_acc < 0.05 else 'not '}significant at the 5 % level (McNemar p = {_p(p_acc)}), the AUC difference "
            f"{'is' if p_auc < 0.05 else 'is not'} (DeLong p = {_p(p_auc)}).")
        gap = s.get("weight_gap_pp", {}).get("BA", {}).get("WEN-kappa")
        if gap is not None:
            parts.append(f"Measuring the weights on the test labels, as the paper does, changes WEN-kappa's BA by "
                         f"{gap:+.2f} points.")
    t5 = {r["classifier"]: r for r in var["table"]}
    if "WEN-kappa" in t5 and t5["WEN-kappa"]["runs"] > 1:
        r = t5["WEN-kappa"]
        parts.append(f"**Over {r['runs']} seeds** WEN-kappa averaged WFS {r['A_WFS']:.3f} (SD {r['SD_WFS_pp']:.2f} points), "
                     f"ACC {r['A_ACC']:.3f}, BA {r['A_BA']:.3f} (SD {r['SD_BA_pp']:.2f} points).")
    parts.append(f"**Grad-CAM:** the ensemble's maps put significantly more energy inside the cell than "
                 f"{cam['more_concentrated_than']} of {cam['models']} single models over {cam['images']} test images.")
    return "\n\n".join(parts)


def summary_table(ens: dict) -> str:
    lines = ["| input | classifier | WFS | ACC | BA | AUC |", "|---|---|---|---|---|---|"]
    for size, s in sorted(ens["sizes"].items(), key=lambda kv: int(kv[0]), reverse=True):
        rows = s.get("paper_faithful", {})
        order = DISPLAY_ORDER + [n for n in rows if n not in DISPLAY_ORDER]
        for name in [n for n in order if n in rows]:
            row = rows[name]
            lines.append(f"| {size} px | {name} | " + " | ".join(_ci(row, k) for k in ("WFS", "ACC", "BA", "AUC")) + " |")
    return ("Table 4 as the paper computes it (weights from the test set), with 95% subject-bootstrap CIs:\n\n"
            + "\n".join(lines))
