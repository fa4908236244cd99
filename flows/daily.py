"""The daily flows: ingest -> validate -> version -> forecast with the champion.

One code path for the stages: they run as the DVC stages of ``dvc.yaml`` (``dvc repro``
in the project root, each stage its own Prefect flow run), so a daily run is recorded
in ``dvc.lock`` exactly like a manual ``seqcast run``, and a stage whose inputs did not
change is skipped. Ingest is forced (the upstream may have new rows) and retried with
backoff; "version" pushes the DVC-tracked outputs to the default remote when one is
configured (``.dvc/config``); the forecast is :func:`flows.forecast.forecast_flow`.

    python -m flows.daily --dataset market
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.paths import project_root


def _dvc(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # dvc.yaml's `python`
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project_root(), env=env, capture_output=True,
                          text=True, timeout=timeout)


@task(name="dvc-repro", cache_policy=NO_CACHE, timeout_seconds=3600)
def dvc_repro(target: str, force_single: bool = False) -> str:
    """``dvc repro <target>`` (``-f -s``: force only that stage). Raises with DVC's output on failure."""
    logger = get_run_logger()
    proc = _dvc(["repro", *(["-f", "-s"] if force_single else []), target], timeout=3500)
    logger.info("dvc repro %s\n%s", target, proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro {target} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout


ingest_stage = dvc_repro.with_options(name="ingest", retries=3, retry_delay_seconds=[10, 60, 300],
                                      timeout_seconds=1800)


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


def run_daily(dataset: str, h: int | None, push: bool) -> dict:
    from flows.forecast import forecast_flow

    ingest_stage(f"ingest@{dataset}", force_single=True)
    dvc_repro(f"validate@{dataset}")
    version = version_data(dataset) if push else {}
    return {**version, **forecast_flow(dataset, h)}


@flow(name="market-daily", log_prints=True, timeout_seconds=4 * 3600)
def market_daily_flow(h: int | None = None, push: bool = True) -> dict:
    """After the close: KOSPI (and every configured ticker) in, validated, versioned; champion forecast."""
    return run_daily("market", h, push)


@flow(name="pm25-daily", log_prints=True, timeout_seconds=4 * 3600)
def pm25_daily_flow(h: int | None = None, push: bool = True) -> dict:
    """PM2.5 in, validated, versioned; the champion's 24-hour forecast (``backtest.p1.horizon``)."""
    return run_daily("pm25", h, push)


def main(argv: list[str] | None = None) -> None:
    from seqcast.cli import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--h", type=int)
    parser.add_argument("--no-push", action="store_true")
    args = parser.parse_args(argv)
    fn = market_daily_flow if args.dataset == "market" else pm25_daily_flow
    print(fn(args.h, not args.no_push))


if __name__ == "__main__":
    main()
