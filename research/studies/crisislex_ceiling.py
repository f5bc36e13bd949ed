"""Is CrisisLexT26 zero-shot short of 0.55 because of class priors? -> research/results/crisislex_ceiling.{json,md}

The probe teacher (`crisislens distill teacher-v2 probe-teacher`: a linear probe on frozen
all-mpnet-base-v2 embeddings, fitted on CrisisMMD training posts and HumAID's own labels at a
weight) is the strongest text model this project trains on two CPU cores, and its students score
about what it scores on CrisisLexT26. CrisisLexT26's class mix is not CrisisMMD's (half of its
posts are `other_relevant_information`, half of CrisisMMD's are `not_humanitarian`), so this
study asks how much of the gap a correction for the class prior could close, on the probe's
class probabilities for a seeded CrisisLexT26 sample:

- as fitted (what the probe teacher and its student see);
- label-shift EM (Saerens et al., 2002): the sample's class prior estimated from the unlabelled
  posts themselves, the probabilities re-weighted by it -- what a triage run could do on a new event;
- the sample's true class prior (an oracle no deployment has): the Bayes correction for the
  right prior. It maximises expected accuracy, not Macro-F1, so it is a yardstick, not a bound.

The embeddings come from the probe teacher's cache (the same seeded samples), so the study only
fits: `--humaid 8000 --crisislex 2000` reuse what
`crisislens distill teacher-v2 probe-teacher --humaid 8000` embedded.

    python research/studies/crisislex_ceiling.py --weights 0,0.1,0.3,1 --humaid 8000 --crisislex 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.markdown import md_table
from _report import add_render_only, numbers, publish, render_only, run_line  # research/studies/_report.py


def reweight(probs: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Class probabilities under a new class prior: p(y|x) * target(y) / source(y), renormalised."""
    out = probs * (np.asarray(target, np.float64) / np.asarray(source, np.float64))
    return out / out.sum(1, keepdims=True)


def em_prior(probs: np.ndarray, source: np.ndarray, iterations: int = 100, tol: float = 1e-8) -> np.ndarray:
    """The class prior of unlabelled posts by EM (Saerens, Latinne, Decaestecker 2002), starting
    from the training prior `source`."""
    prior = np.asarray(source, np.float64).copy()
    for _ in range(iterations):
        new = reweight(probs, source, prior).mean(0)
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def scores(gold: list[str], probs: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    pred = np.asarray(labels)[probs.argmax(1)]
    return {"macro_f1": float(f1_score(gold, pred, labels=list(labels), average="macro")),
            "accuracy": float(np.mean(pred == np.asarray(gold))),
            "predicted_share": {c: float(np.mean(pred == c)) for c in labels}}


def study(weight: float, fit: tuple[np.ndarray, list[str]], humaid: tuple[np.ndarray, list[str]],
          dev: tuple[np.ndarray, list[str]], sets: dict[str, tuple[np.ndarray, list[str]]],
          labels: tuple[str, ...]) -> dict[str, Any]:
    """One HumAID weight: the probe (C picked on CrisisMMD dev, as the product command picks it)
    and each set scored as fitted, with the EM prior and with its own true prior."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix

    from crisislens.distill.probe_teacher import pick_c

    x = np.concatenate([fit[0], humaid[0]]) if weight > 0 else fit[0]
    y = fit[1] + humaid[1] if weight > 0 else fit[1]
    w = np.array([1.0] * len(fit[1]) + [weight] * len(humaid[1])) if weight > 0 else None
    c, _ = pick_c(x, y, dev[0], dev[1], w)
    model = LogisticRegression(C=c, max_iter=3000).fit(x, y, sample_weight=w)
    order = [list(model.classes_).index(k) for k in labels]
    counts = np.array([(np.ones(len(y)) if w is None else w)[np.asarray(y) == k].sum() for k in labels])
    source = counts / counts.sum()
    out: dict[str, Any] = {"humaid_weight": weight, "C": c, "training_prior": dict(zip(labels, source.tolist()))}
    for name, (xs, gold) in sets.items():
        probs = model.predict_proba(xs)[:, order]
        true = np.array([np.mean(np.asarray(gold) == k) for k in labels])
        estimated = em_prior(probs, source)
        out[name] = {"n": len(gold), "true_prior": dict(zip(labels, true.tolist())),
                     "em_prior": dict(zip(labels, estimated.tolist())),
                     "as_fitted": scores(gold, probs, labels),
                     "em": scores(gold, reweight(probs, source, estimated), labels),
                     "true_prior_oracle": scores(gold, reweight(probs, source, true), labels),
                     "confusion": confusion_matrix(gold, np.asarray(labels)[probs.argmax(1)],
                                                   labels=list(labels)).tolist()}
    return out


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    labels = result["labels"]
    short = {k: k.split("_")[0] for k in labels}
    rows = []
    for r in result["rows"]:
        for name in result["sets"]:
            s = r[name]
            rows.append((f"{r['humaid_weight']:g}", name, f"{s['as_fitted']['macro_f1']:.4f}", f"{s['em']['macro_f1']:.4f}",
                         f"{s['true_prior_oracle']['macro_f1']:.4f}",
                         f"{s['as_fitted']['predicted_share']['not_humanitarian']:.2f} / "
                         f"{s['true_prior']['not_humanitarian']:.2f}",
                         f"{s['em_prior']['not_humanitarian']:.2f}"))
    pick = next(r for r in result["rows"] if r["humaid_weight"] == result["confusion_weight"])
    lex = pick["crisislex_t26 sample"]
    confusion = [(short[g], *lex["confusion"][i]) for i, g in enumerate(labels)]
    return "\n".join([
        "# CrisisLexT26 zero-shot: what a class-prior correction gives (MPNet probe teacher)", "",
        run_line(prov, result["seconds"]), "",
        f"{result['humaid_rows']} HumAID training posts (seeded sample) beside CrisisMMD's, each weighing the weight "
        f"shown; C picked on CrisisMMD dev. CrisisLexT26: a seeded sample of {lex['n']} posts, never trained on. "
        "Macro-F1 as fitted, after label-shift EM on the unlabelled posts, and with the set's true class prior "
        "(an oracle no deployment has).", "",
        *md_table(["HumAID weight", "set", "Macro-F1 as fitted", "with the EM prior", "with the true prior (oracle)",
                   "not_humanitarian predicted / true share", "EM's not_humanitarian share"], rows), "",
        f"Where the CrisisLexT26 posts go (HumAID weight {result['confusion_weight']:g}; rows gold, columns predicted):", "",
        *md_table(["gold \\ predicted", *(short[k] for k in labels)], confusion), ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=numbers, default="0,0.1,0.3,1", help="HumAID weights, comma-separated")
    p.add_argument("--crisislex", type=int, default=2000, help="CrisisLexT26 sample size")
    p.add_argument("--humaid", type=int, default=8000, help="a seeded sample of N HumAID training posts (0: all)")
    p.add_argument("--seed", type=int, default=13, help="the samples' seed")
    p.add_argument("--confusion-weight", type=float, default=0.3, help="the weight whose confusion matrix is shown")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--cache", type=Path, default=Path("artifacts/cache-v2"), help="the probe teacher's embedding cache")
    p.add_argument("--out", type=Path, default=Path("research/results"))
    add_render_only(p)
    a = p.parse_args(argv)
    if a.render_only:
        return render_only("crisislex_ceiling", a.out, render)
    weights = a.weights
    if a.confusion_weight not in weights:
        p.error(f"--confusion-weight {a.confusion_weight:g}: not one of --weights")
    from crisislens.distill.probe_teacher import cached_rows_embeddings, crisislex_sample, sample_humaid
    from crisislens.distill.teacher_v2_data import gather
    from crisislens.runtime.labels import LABEL_NAMES

    started = time.perf_counter()
    groups = sample_humaid(gather(a.data_root), a.humaid, a.seed)
    train = [e for e in groups["crisismmd:train"] if e.text and e.label]
    dev = [e for e in groups["crisismmd:dev"] if e.label]
    test = [e for e in groups["crisismmd:test"] if e.label]
    humaid = [e for e in groups.get("humaid:train", []) if e.text and e.label]
    lex = crisislex_sample(groups, a.crisislex, a.seed)  # the probe teacher's sample
    parts = [train, humaid, dev, test, lex]
    x = cached_rows_embeddings("mpnet", [e for part in parts for e in part], a.cache)
    xs = np.split(x, np.cumsum([len(part) for part in parts])[:-1])
    data = [(xi, [e.label or "" for e in part]) for xi, part in zip(xs, parts)]
    sets = {"CrisisMMD test": data[3], "crisislex_t26 sample": data[4]}
    rows = []
    for w in weights:
        rows.append(study(w, data[0], data[1], data[2], sets, LABEL_NAMES))
        lx = rows[-1]["crisislex_t26 sample"]
        print(f"weight {w:g}: CrisisLexT26 {lx['as_fitted']['macro_f1']:.4f}, EM {lx['em']['macro_f1']:.4f}, "
              f"true prior {lx['true_prior_oracle']['macro_f1']:.4f}", file=sys.stderr)
    result = {"encoder": "mpnet", "humaid_rows": len(humaid), "seed": a.seed, "labels": list(LABEL_NAMES),
              "sets": list(sets), "confusion_weight": a.confusion_weight, "rows": rows,
              "seconds": round(time.perf_counter() - started, 1)}
    publish("crisislex_ceiling", " ".join(["python research/studies/crisislex_ceiling.py", *sys.argv[1:]]),
            result, render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
