"""The champion model of a dataset: the written-down promotion rule and the MLflow registry.

The rule (pure, :func:`decide`)
-------------------------------
1. Candidates are the latest finished backtest run of every model on the dataset's
   reference series (the first series of its clean table), all on that dataset's
   protocol (``datasets.<name>.protocol``).
2. Score = the mean MASE over the protocol's tasks (P2a + P2b, P1a + P1b, P4a + P4b),
   rounded to 3 decimals (what the leaderboard shows). Lower is better. Where a
   candidate beats seasonal naive on the last (multi-step) task, only the candidates
   that do not lose to it there are eligible: a champion never loses to seasonal naive
   on the h-step task when any model can beat it.
3. Ties on the score are broken by coverage: the mean |cov95 - 0.95| over the tasks,
   lower is better; then by model name (deterministic).
4. The best candidate is promoted only when there is no champion, or the champion
   was scored on the same protocol and series and the candidate ranks strictly
   better by 2-3. A champion from another protocol is not comparable: it is kept
   (``force=True`` overrides). A candidate that is the champion's own run changes
   nothing.

The registry (:func:`promote`)
------------------------------
One registered model per dataset, ``seqcast-<dataset>``. A promoted run becomes a new
model version (source ``models:/<logged model id>``) with the alias ``champion``; the
previous champion gets the alias ``challenger`` and the tags ``demoted_at`` and
``replaced_by``; every version keeps its score, protocol and data version as tags,
and the registered model's tag ``champion_history`` is the list of every champion so
far (version, model, run, score, date).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

CHAMPION, CHALLENGER = "champion", "challenger"
TARGET_COVERAGE = 0.95
DECIMALS = 3


@dataclass(frozen=True)
class Candidate:
    model: str
    run_id: str
    protocol: str  # P1 / P2
    series: str
    mase: float  # mean MASE over the protocol's tasks
    coverage_error: float  # mean |cov95 - 0.95| over the protocol's tasks
    data_version: str = ""
    h_mase: float = math.nan  # MASE of the last (multi-step) task

    def rank_key(self) -> tuple[float, float, str]:
        mase = round(self.mase, DECIMALS) if math.isfinite(self.mase) else math.inf
        cov = self.coverage_error if math.isfinite(self.coverage_error) else math.inf
        return (mase, cov, self.model)


@dataclass(frozen=True)
class Decision:
    promote: bool
    best: Candidate | None
    champion: Candidate | None
    reason: str


def candidate_from_metrics(model: str, run_id: str, protocol: str, series: str, metrics: dict[str, float],
                           data_version: str = "", tasks: list[str] | None = None) -> Candidate:
    """Score one run from its MLflow metrics (``<task>_mase``, ``<task>_cov95``) over the
    protocol's ``tasks`` (default ``<P>a``, ``<P>b``)."""
    tasks = tasks or [f"{protocol}a", f"{protocol}b"]
    mases = [metrics.get(f"{t}_mase", math.nan) for t in tasks]
    covs = [abs(metrics.get(f"{t}_cov95", math.nan) - TARGET_COVERAGE) for t in tasks]
    return Candidate(model, run_id, protocol, series, sum(mases) / len(mases), sum(covs) / len(covs), data_version,
                     mases[-1])


BASELINE = "seasonal_naive"


def eligible(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates with a finite score; where one beats seasonal naive on the last task,
    those that lose to it there are out (rule 2)."""
    usable = [c for c in candidates if math.isfinite(c.mase)]
    base = next((c for c in usable if c.model == BASELINE and math.isfinite(c.h_mase)), None)
    if base is None or not any(c.h_mase < base.h_mase for c in usable if c is not base):
        return usable
    return [c for c in usable if math.isfinite(c.h_mase) and c.h_mase <= base.h_mase]


def best_of(candidates: list[Candidate]) -> Candidate | None:
    usable = eligible(candidates)
    return min(usable, key=Candidate.rank_key) if usable else None


def decide(candidates: list[Candidate], champion: Candidate | None, force: bool = False) -> Decision:
    """The promotion rule (see the module docstring)."""
    best = best_of(candidates)
    if best is None:
        return Decision(False, None, champion, "no candidate has a finite MASE")
    if champion is None:
        return Decision(True, best, None, "no champion yet")
    if best.run_id == champion.run_id:
        return Decision(False, best, champion, "the best candidate is the champion")
    if force:
        return Decision(True, best, champion, "forced")
    if (best.protocol, best.series) != (champion.protocol, champion.series):
        return Decision(False, best, champion, f"not comparable: champion on {champion.protocol}/{champion.series}, "
                                                f"candidate on {best.protocol}/{best.series}")
    if best.rank_key()[:2] < champion.rank_key()[:2]:
        return Decision(True, best, champion, f"{best.model} ranks better: MASE {best.mase:.3f} vs "
                                              f"{champion.mase:.3f} ({champion.model})")
    return Decision(False, best, champion, f"{best.model} (MASE {best.mase:.3f}) does not beat the champion "
                                           f"{champion.model} (MASE {champion.mase:.3f})")


def runner_up(candidates: list[Candidate], best: Candidate) -> Candidate | None:
    """The second of the ranking: the best eligible candidate that is another model."""
    others = [c for c in eligible(candidates) if c.model != best.model]
    return min(others, key=Candidate.rank_key) if others else None


def why_it_won(dataset: str, best: Candidate, second: Candidate | None, tasks: list[str], reason: str) -> str:
    """The champion version's description: its score, the runner-up's, the data it was judged on."""
    score = (f"score {best.mase:.{DECIMALS}f}: the mean MASE over {' + '.join(tasks)} of {best.protocol} on "
             f"`{best.series}` (lower is better)")
    text = f"**{best.model}** is the champion of {dataset}: {score}, 95 % coverage off by {best.coverage_error:.3f} on average."
    if second is not None:
        text += f" Runner-up: {second.model}, score {second.mase:.{DECIMALS}f}."
    if best.data_version:
        text += f" Judged on data version {best.data_version[:12]} (md5 of the clean table, tag `data_version`)."
    return f"{text} Promoted because: {reason}."


# ------------------------------------------------------------------ MLflow side


def registered_name(dataset: str) -> str:
    from seqcast.config import load_params

    return f"{load_params().mlflow.experiment_prefix}-{dataset}"


def reference_series(dataset: str) -> str:
    """The series the dataset's leaderboard is about: the backtest's reference series (its
    summary), else the first series the dataset's entry names."""
    from seqcast.config import load_params

    params = load_params()
    summary = params.path("reports", "backtest", f"{dataset}.summary.json")
    if summary.is_file():
        reference = json.loads(summary.read_text()).get("reference")
        if reference:
            return reference
    named = params.dataset(dataset).series
    if not named:
        raise FileNotFoundError(f"{dataset}: no backtest summary ({summary}) to read the reference series from: "
                                f"run `dvc repro backtest@{dataset}`")
    return named[0]


def task_names(dataset: str) -> list[str]:
    from seqcast.config import load_params

    return [t.name for t in load_params().dataset(dataset).task_specs()]


def latest_candidates(dataset: str, series: str | None = None) -> list[Candidate]:
    """The latest finished backtest run of each model on the reference series."""
    import mlflow

    from seqcast import tracking

    tracking.use_store()
    series = series or reference_series(dataset)
    tasks = task_names(dataset)
    runs = mlflow.search_runs(experiment_names=[tracking.experiment_name(dataset)],
                              filter_string=f"attributes.status = 'FINISHED' and tags.series = '{series}' "
                                            "and tags.family != 'report'",
                              order_by=["attributes.start_time DESC"], output_format="list")
    seen: dict[str, Candidate] = {}
    for run in runs:
        model = run.data.tags.get("model")
        if model in seen or not run.outputs or not run.outputs.model_outputs:
            continue
        seen[model] = candidate_from_metrics(model, run.info.run_id, run.data.tags.get("protocol", ""), series,
                                             run.data.metrics, run.data.tags.get("data_version", ""), tasks)
    return list(seen.values())


def current_champion(name: str):
    """(model version, Candidate) of the alias ``champion``, or (None, None)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    t = mv.tags
    cand = Candidate(t.get("model", ""), mv.run_id, t.get("protocol", ""), t.get("series", ""),
                     float(t.get("mase", "nan")), float(t.get("coverage_error", "nan")), t.get("data_version", ""),
                     float(t.get("h_mase", "nan")))
    return mv, cand


def promote(dataset: str, force: bool = False, candidates: list[Candidate] | None = None) -> dict:
    """Apply the rule to the latest backtest of ``dataset``; register and alias on promotion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from seqcast import tracking

    tracking.use_store()
    client = MlflowClient()
    name = registered_name(dataset)
    candidates = latest_candidates(dataset) if candidates is None else candidates
    old_mv, champion = current_champion(name)
    decision = decide(candidates, champion, force)
    out = {"dataset": dataset, "registered_model": name, "promoted": decision.promote, "reason": decision.reason,
           "best": asdict(decision.best) if decision.best else None,
           "champion_version": int(old_mv.version) if old_mv else None}
    if not decision.promote:
        return out
    best = decision.best
    description = why_it_won(dataset, best, runner_up(candidates, best), task_names(dataset), decision.reason)
    try:
        client.create_registered_model(name, tags={"dataset": dataset},
                                       description=f"Champion forecaster of {dataset} (tasks/promotion.py rule)")
    except MlflowException as err:
        if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
            raise
    run = client.get_run(best.run_id)
    model_id = run.outputs.model_outputs[-1].model_id
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    mv = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=best.run_id, model_id=model_id,
        tags={"model": best.model, "protocol": best.protocol, "series": best.series, "mase": repr(best.mase),
              "coverage_error": repr(best.coverage_error), "h_mase": repr(best.h_mase),
              "data_version": best.data_version,
              "train_end": run.data.params.get("train_end", ""), "promoted_at": now, "reason": decision.reason},
        description=description)
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    client.update_registered_model(name, description=f"Version {mv.version} (alias `{CHAMPION}`): {description}")
    if old_mv is not None:
        client.set_registered_model_alias(name, CHALLENGER, old_mv.version)
        client.set_model_version_tag(name, old_mv.version, "demoted_at", now)
        client.set_model_version_tag(name, old_mv.version, "replaced_by", str(mv.version))
    history = json.loads(client.get_registered_model(name).tags.get("champion_history", "[]"))
    history.append({"version": int(mv.version), "model": best.model, "run_id": best.run_id,
                    "mase": round(best.mase, DECIMALS), "promoted_at": now})
    client.set_registered_model_tag(name, "champion_history", json.dumps(history))
    out.update(version=int(mv.version), model_uri=f"models:/{name}@{CHAMPION}")
    return out


def champion_summary(dataset: str) -> dict | None:
    """The current champion of ``dataset``: version, model, series, score (None when there is none)."""
    from seqcast import tracking

    tracking.use_store()
    mv, cand = current_champion(registered_name(dataset))
    if mv is None:
        return None
    return {"version": int(mv.version), "model": cand.model, "series": cand.series, "protocol": cand.protocol,
            "mase": round(cand.mase, DECIMALS), "run_id": cand.run_id, "data_version": cand.data_version,
            "model_uri": f"models:/{registered_name(dataset)}@{CHAMPION}"}
