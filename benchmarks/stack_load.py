"""A bounded load test of the MLflow tracking server: N clients logging metrics at once.

    seqcast bench stack_load [--clients 8] [--seconds 60] [--uri http://127.0.0.1:5000]

Each client (a thread with its own keep-alive connection) creates a run in the experiment
``seqcast-load``, then logs one metric per request (``POST /api/2.0/mlflow/runs/log-metric``,
the value its own counter) as fast as the server answers, until ``--seconds`` have passed;
the run is then ended. Afterwards every run's metric history is read back: a value the server
acknowledged and did not store is counted as lost. Loopback servers only (the URI's host
must be 127.0.0.1, ::1 or localhost); the loop stops by itself. The default URI is
``MLFLOW_TRACKING_URI`` (``seqcast stack up`` prints it). Prints a line; the last line is JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class Client:
    def __init__(self, uri: str):
        parts = urllib.parse.urlparse(uri)
        self.host, self.port = parts.hostname, parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, "/api/2.0/mlflow/" + path, body=data,
                              headers={"Content-Type": "application/json"} if data else {})
            resp = self.conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # a fresh connection for the next request
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            raise
        if resp.status >= 400:
            raise RuntimeError(f"HTTP {resp.status}: {payload[:200]!r}")
        return json.loads(payload or b"{}")


def experiment_id(client: Client, name: str) -> str:
    try:
        return client.call("GET", f"experiments/get-by-name?experiment_name={urllib.parse.quote(name)}")["experiment"][
            "experiment_id"]
    except RuntimeError:
        return client.call("POST", "experiments/create", {"name": name})["experiment_id"]


def worker(uri: str, exp: str, deadline: float, index: int, out: list) -> None:
    client = Client(uri)
    run_id = client.call("POST", "runs/create", {"experiment_id": exp, "run_name": f"load {index}",
                                                 "start_time": int(time.time() * 1000)})["run"]["info"]["run_id"]
    latencies, errors, step = [], 0, 0
    while time.time() < deadline:
        t0 = time.perf_counter()
        try:
            client.call("POST", "runs/log-metric", {"run_id": run_id, "key": "load", "value": float(step),
                                                    "timestamp": int(time.time() * 1000), "step": step})
            latencies.append(time.perf_counter() - t0)
            step += 1
        except (OSError, RuntimeError, http.client.HTTPException):
            errors += 1
    client.call("POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    out.append({"run_id": run_id, "latencies": latencies, "errors": errors, "acknowledged": step})


def load(uri: str, clients: int, seconds: float) -> dict:
    host = urllib.parse.urlparse(uri).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"seqcast bench stack_load: {uri} is not a loopback server (127.0.0.1, ::1, localhost)")
    exp = experiment_id(Client(uri), "seqcast-load")
    results: list[dict] = []
    deadline = time.time() + seconds
    threads = [threading.Thread(target=worker, args=(uri, exp, deadline, i, results)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    wall = time.perf_counter() - t0
    reader = Client(uri)
    lost = 0
    for r in results:
        history = reader.call("GET", f"metrics/get-history?run_id={r['run_id']}&metric_key=load&max_results=100000")
        stored = {int(m["step"]) for m in history.get("metrics", [])}
        lost += len(set(range(r["acknowledged"])) - stored)
    lat = sorted(x for r in results for x in r["latencies"])
    n = len(lat)

    def pct(q: float) -> float:
        return round(1000 * lat[min(n - 1, int(q * n))], 1) if n else float("nan")

    return {"benchmark": "stack_load", "uri": uri, "clients": clients, "seconds": seconds, "requests": n,
            "requests_per_s": round(n / wall, 1), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(1000 * lat[-1], 1) if n else float("nan"), "errors": sum(r["errors"] for r in results),
            "lost": lost, "finished_clients": len(results), "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqcast bench stack_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    args = parser.parse_args(argv)
    if not args.uri or not args.uri.startswith("http"):
        raise SystemExit("seqcast bench stack_load: name a tracking server (--uri or MLFLOW_TRACKING_URI; "
                         "seqcast stack up prints it)")
    out = load(args.uri, args.clients, args.seconds)
    print(f"{out['clients']} clients x {out['seconds']:.0f}s: {out['requests']} requests, {out['requests_per_s']}/s, "
          f"p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, errors {out['errors']}, lost {out['lost']}")
    print(json.dumps(out))
    return 0 if out["errors"] == 0 and out["lost"] == 0 and out["finished_clients"] == args.clients else 1


if __name__ == "__main__":
    raise SystemExit(main())
