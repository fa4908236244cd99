"""The daily flow of a dataset: ingest -> validate -> version -> forecast with the champion.

One code path for the stages: they run as the DVC stages of ``dvc.yaml`` (``dvc repro``
in the project root, each stage its own Prefect flow run), so a daily run is recorded
in ``dvc.lock`` exactly like a manual ``seqcast run``, and a stage whose inputs did not
change is skipped. Ingest is forced (the upstream may have new rows) and retried with
backoff; "version" pushes the DVC-tracked outputs to the default remote when one is
configured (``.dvc/config``); the forecast is the ``forecast@<dataset>`` stage run alone
(``-s``): the current champion on the day's data, no retraining (that is the weekly
retrain's job, :mod:`flows.retrain`). ``seqcast deploy`` schedules it per dataset
(``datasets.<name>.schedule.forecast``).

    python -m flows.daily --dataset <name>
"""

from __future__ import annotations

import subprocess
import sys

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.env import child_env
from seqcast.paths import project_root


def _dvc(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project_root(), env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


@task(name="dvc-repro", cache_policy=NO_CACHE, timeout_seconds=3600)
def dvc_repro(*targets: str, force_single: bool = False, single: bool = False) -> str:
    """``dvc repro <targets>`` (``single``: ``-s``, only those stages; ``force_single``: ``-f -s``).
    Raises with DVC's output on failure."""
    logger = get_run_logger()
    flags = ["-f", "-s"] if force_single else ["-s"] if single else []
    proc = _dvc(["repro", *flags, *targets], timeout=3500)
    logger.info("dvc repro %s\n%s", " ".join(targets), proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro {' '.join(targets)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout


def ingest_stage(target: str) -> str:
    """``dvc repro -f -s ingest@<dataset>``, retried as params.yaml says (``ingest.retries``/``retry_delay_seconds``)."""
    from seqcast.config import load_params

    policy = load_params().ingest
    return dvc_repro.with_options(name="ingest", retries=policy.retries, retry_delay_seconds=policy.retry_delay_seconds,
                                  timeout_seconds=1800)(target, force_single=True)


@task(name="version", cache_policy=NO_CACHE, timeout_seconds=900, retries=2, retry_delay_seconds=[10, 60])
def version_data(dataset: str) -> dict:
    """The data version of the day (md5 of the clean table in dvc.lock), pushed to the default remote."""
    import yaml

    logger = get_run_logger()
    lock = yaml.safe_load((project_root() / "dvc.lock").read_text())
    outs = lock["stages"][f"validate@{dataset}"]["outs"]
    md5 = next(o["md5"] for o in outs if o["path"].endswith(f"{dataset}.parquet"))
    remote = _dvc(["remote", "default"], timeout=60).stdout.strip()
    pushed = False
    if remote:
        proc = _dvc(["push", f"validate@{dataset}"], timeout=850)
        if proc.returncode != 0:
            raise RuntimeError(f"dvc push to {remote} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        pushed = True
    logger.info("%s: data version %s%s", dataset, md5, f", pushed to {remote}" if pushed else " (no DVC remote)")
    return {"data_version": md5, "remote": remote, "pushed": pushed}


def run_daily(dataset: str, push: bool) -> dict:
    import json

    from seqcast.config import load_params

    ingest_stage(f"ingest@{dataset}")
    dvc_repro(f"validate@{dataset}", single=True)
    version = version_data(dataset) if push else {}
    dvc_repro(f"forecast@{dataset}", single=True)
    path = load_params().path("reports", "forecast", f"{dataset}.csv")
    first = path.read_text().splitlines()[1].split(",") if path.is_file() else []
    return {**version, "forecast_table": str(path), "first": first,
            "promotion": json.loads(load_params().path("reports", "promotion", f"{dataset}.json").read_text())}


@flow(name="daily", log_prints=True, timeout_seconds=4 * 3600)
def daily_flow(dataset: str, push: bool = True) -> dict:
    """The day's data of ``dataset`` in, validated, versioned; the champion's forecast of the next
    horizon."""
    return run_daily(dataset, push)


def main(argv: list[str] | None = None) -> None:
    from flows.entry import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--no-push", action="store_true")
    args = parser.parse_args(argv)
    print(daily_flow(args.dataset, not args.no_push))


if __name__ == "__main__":
    main()
