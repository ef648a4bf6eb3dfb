"""``facesketch study summary``: HIDA's Figure 5 (mean preference per method, standard
deviation across participants) and a Parquet of every answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from facesketch.errors import DataError
from facesketch.fileio import atomic_path, write_json, write_parquet
from facesketch.study import store


def preferences(answers: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per participant, the % of their answers that chose each method; then mean, std and n."""
    counts = pd.crosstab(answers.participant, answers.choice).reindex(columns=methods, fill_value=0)
    pct = counts.div(counts.sum(axis=1), axis=0) * 100
    return pd.DataFrame({"method": methods, "mean_pct": pct.mean().to_numpy(),
                         "std_pct": pct.std(ddof=1).to_numpy() if len(pct) > 1 else np.full(len(methods), np.nan),
                         "n_participants": len(pct), "n_answers": counts.sum().to_numpy()})


def summarize(folder: Path, out: Path) -> pd.DataFrame:
    folder, out = Path(folder), Path(out)
    study = store.load_study(folder)
    answers = store.all_answers(folder)
    if answers.empty:
        raise DataError(f"{folder / store.DB_FILE}: no answers yet")
    by_item = {it["item"]: it for it in study["items"]}
    answers["image_id"] = answers["item"].map(lambda i: by_item[i]["image_id"])
    answers["style"] = answers["item"].map(lambda i: by_item[i]["style"])
    answers["shown_order"] = answers.shown_order.map(json.loads)
    answers["seconds"] = answers.answered_at - answers.shown_at
    write_parquet(out / "answers.parquet", answers)
    pref = preferences(answers, study["methods"])
    write_parquet(out / "preferences.parquet", pref)
    write_json(out / "summary.json", {"title": study["title"], "items": len(study["items"]),
                                      "participants": int(answers.participant.nunique()),
                                      "answers": len(answers), "preferences": pref.to_dict(orient="records")})
    figure5(pref, out / "figure5.png", study["title"])
    return pref


def figure5(pref: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.1 * len(pref) + 2.5, 3.6))
    err = np.nan_to_num(pref.std_pct.to_numpy())
    ax.bar(pref.method, pref.mean_pct, yerr=err, capsize=4, color="#4c72b0")
    n = int(pref.n_participants.iloc[0])
    ax.set_ylabel("preferred (% of a participant's answers)")
    ax.set_title(f"{title}: mean over {n} participant(s), bars ± std (HIDA Figure 5)", fontsize=9)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
