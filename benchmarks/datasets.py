"""Users' datasets end to end: real series of statsmodels and a 20,000-row half-hourly load series
through `seqcast datasets add` and `seqcast run --dataset`, in a scratch copy of the project.

    seqcast bench datasets [--only co2,macrodata,sunspots,elnino,load20k] [--keep DIR]

For each dataset: rows, frequency, season, the models of the reference series, the wall time of
`seqcast run --dataset` (ingest .. forecast), the champion and its P4b MASE against seasonal
naive's (with the Diebold–Mariano p-value of the champion against it) and the champion's 95 %
coverage. ``load20k`` is the budget check of the default model list (backtest.default_models):
a 20,000-row series with a covariate. The table is printed as Markdown; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._packaged import PACKAGED, half_hourly_load, packaged, write

CASES = (*PACKAGED, "load20k")


def scratch_copy(dest: Path) -> Path:
    """The project's tracked files in a new git repository (as a fresh clone would hold them)."""
    from seqcast.paths import project_root

    root = project_root()
    files = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        if (root / rel).is_file() and not rel.startswith("tests/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dest / rel)
    git = ["git", "-c", "user.email=bench@seqcast", "-c", "user.name=seqcast bench"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "scratch copy"], cwd=dest, check=True)
    return dest


def case_file(name: str, folder: Path) -> tuple[Path, list[str]]:
    """The file of a case and the options of `seqcast datasets add` for it."""
    if name == "load20k":
        table = half_hourly_load(days_per_block=210, blocks=("2022-01-01", "2022-07-30"))
        table = table.iloc[:20_000]
        return write(table, folder / "load.csv"), ["--time", "timestamp", "--target", "demand", "--covariates",
                                                  "temperature", "--known-covariates", "workday", "--timezone",
                                                  "Australia/Melbourne"]
    return write(packaged(name), folder / f"{name}.csv"), ["--time", "date", "--target", "value"]


def seqcast(args: list[str], ws: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    out = subprocess.run([str(Path(sys.executable).parent / "seqcast"), *args], cwd=ws, env=env, capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"seqcast {' '.join(args[:3])} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def row_of(name: str, ws: Path, seconds: float) -> dict:
    entry = yaml.safe_load((ws / "params.yaml").read_text())["datasets"][name]
    summary = json.loads((ws / "reports" / "backtest" / f"{name}.summary.json").read_text())
    board = json.loads((ws / "reports" / "backtest" / f"{name}.json").read_text())[summary["reference"]]
    champion = json.loads((ws / "reports" / "promotion" / f"{name}.json").read_text())["champion"]["model"]
    import pyarrow.parquet as pq

    task = next(k[: -len("_mase")] for k in board[champion] if k.endswith("b_mase"))
    base = board.get("seasonal_naive", {})
    return {"dataset": name, "rows": pq.ParquetFile(ws / "data" / "clean" / f"{name}.parquet").metadata.num_rows,
            "frequency": entry["data"]["frequency"], "models": len(board), "run_seconds": round(seconds, 1),
            "champion": champion, "task": task, "champion_mase": round(board[champion][f"{task}_mase"], 3),
            "seasonal_naive_mase": round(base.get(f"{task}_mase", float("nan")), 3),
            "dm_pvalue": round(board[champion].get(f"{task}_dm_pvalue", float("nan")), 3),
            "champion_cov95": round(board[champion].get(f"{task}_cov95", float("nan")), 3),
            "unscored": summary.get("unscored", {})}


def markdown(rows: list[dict]) -> str:
    head = ["dataset", "rows", "frequency", "models", "run_seconds", "champion", "task", "champion_mase",
            "seasonal_naive_mase", "dm_pvalue", "champion_cov95"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqcast bench datasets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"a comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        ws = scratch_copy(folder / "project")
        env = dict(os.environ, SEQCAST_HOME=str(ws), PATH=str(Path(sys.executable).parent) + os.pathsep
                   + os.environ.get("PATH", ""))
        env.pop("MLFLOW_TRACKING_URI", None)
        rows = []
        for name in cases:
            path, options = case_file(name, folder / "files")
            seqcast(["datasets", "add", name, "--file", str(path), *options], ws, env, 900)
            t0 = time.perf_counter()
            seqcast(["run", "--dataset", name], ws, env, 7200)
            rows.append(row_of(name, ws, time.perf_counter() - t0))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
        print(markdown(rows))
        print(json.dumps({"benchmark": "datasets", "loadavg": os.getloadavg(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
