"""What the MLflow UI shows first: each experiment's description and the leaderboard view.

MLflow keeps both as experiment tags: ``mlflow.note.content`` is the description (Markdown,
its first line shown in the experiment list), ``mlflow.experimentKind`` makes the UI open
an experiment on its runs (not the GenAI overview), and ``mlflow.sharedViewState.<key>``
is a saved view of the runs table (the *Views* menu; the link ``#/experiments/<id>/runs?
viewStateShareKey=<key>`` opens it). A backtest experiment gets the view ``Leaderboard``:
the model runs of the reference series, sorted by ``score`` (the champion rule's score:
mean MASE over the protocol's tasks), with each task's MASE and 95 % coverage as columns.
"""

from __future__ import annotations

import json
import time

NOTE_TAG = "mlflow.note.content"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
VIEW_KEY = "leaderboard"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
SCORE = "score"  # mean MASE over the protocol's tasks (tasks/promotion.py), logged on every model run


def view_link(experiment_id: str) -> str:
    """The leaderboard view of a backtest experiment, relative to the MLflow UI's address."""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def note_for(name: str, prefix: str, experiment_id: str) -> str:
    """The description of the experiment ``name`` (``<prefix>-<dataset>[-data|-forecast]``, or
    the language models' ``<prefix>-text`` and ``<prefix>-gpt_forecaster``)."""
    what = name[len(prefix) + 1:] if name.startswith(f"{prefix}-") else name
    if what.endswith("-data"):
        dataset = what[: -len("-data")]
        return (f"Data runs of {dataset}: one validation run (Great Expectations: rows, warnings, the Data Docs "
                f"under artifacts) and one stationarity run (ADF and KPSS verdicts, ACF/PACF plots) per pipeline "
                f"run.\n\nEach run's tag `data_version` is the md5 of the table it checked (DVC's), the same tag "
                f"as on the model runs in `{prefix}-{dataset}` that used it.")
    if what.endswith("-forecast"):
        dataset = what[: -len("-forecast")]
        return (f"Forecasts of {dataset} by its champion (`models:/{prefix}-{dataset}@champion`): one run per "
                f"forecast, with the table (`forecast/{dataset}.csv`: each step's timestamp, point and 80/95 % "
                f"bounds) and the fan chart under artifacts.\n\nTags name the registered version and the data "
                f"version it forecast from; the run name holds the first forecast step.")
    if what == "text":
        return ("The language models on Tiny Shakespeare (protocol P3): one run per rung of the ladder (n-grams, "
                "RNN, LSTM) and the GPT, the chat fine-tune and the task heads.\n\nCompare runs by `P3_val_loss` "
                "(nats per character on the validation text, lower is better) and `P3_train_s`.")
    if what == "gpt_forecaster":
        return ("The GPT forecaster: its training run (loss curves, the series it read and the held-out ones) and "
                "the comparison run, whose table `comparison.json` sets it beside the other forecasters on each "
                "dataset's multi-step task.")
    link = view_link(experiment_id)
    return (f"Backtests of {what}: one run per (series, model), scored on the dataset's protocol, under a parent "
            f"run `backtest · {what}` whose description is the leaderboard.\n\n"
            f"**Which model is best**: open the view *Leaderboard* ([link]({link}), or the Views menu above the "
            f"runs): the model runs of the reference series sorted by `{SCORE}`, the mean MASE over the protocol's "
            f"tasks (the champion rule's score; lower is better, below 1 beats the in-sample naive forecast), with "
            f"each task's MASE and 95 % coverage (best near 0.95) and the Diebold-Mariano p-value against the "
            f"baseline.\n\n**To compare**: tick runs in that view and press *Compare* (metrics side by side, "
            f"parallel coordinates). The winner is registered as `{prefix}-{what}` (Models, alias `champion`); its "
            f"version's description says why it won.")


def leaderboard_view(reference: str, tasks: list[str], created_ms: int | None = None) -> str:
    """The tag value of the saved view ``Leaderboard``: the reference series' model runs (no parent,
    no data run) sorted by score, the headline metrics as columns, in this order."""
    columns = [SCORE, *[f"{t}_mase" for t in tasks], *[f"{t}_cov95" for t in tasks], f"{tasks[-1]}_dm_pvalue"]
    keys = [f"metrics.`{c}`" for c in columns]
    series = reference.replace("'", "\\'")
    state = {
        "searchFilter": f"tags.series = '{series}' and tags.family != 'report'",
        "orderByKey": f"metrics.`{SCORE}`", "orderByAsc": True, "startTime": "ALL", "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "selectedColumns": keys, "columnOrder": ["attributes.`Run Name`", *keys], "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL", "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
    }
    now = int(time.time() * 1000) if created_ms is None else created_ms
    return json.dumps({"name": "Leaderboard", "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def describe_experiment(client, experiment_id: str, name: str, prefix: str) -> None:
    """Give an experiment its description and kind (once: a description a user edited is kept)."""
    tags = client.get_experiment(experiment_id).tags
    if NOTE_TAG not in tags:
        client.set_experiment_tag(experiment_id, NOTE_TAG, note_for(name, prefix, experiment_id))
    if KIND_TAG not in tags:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
