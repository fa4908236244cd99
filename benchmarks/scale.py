"""Many series: serial loop vs Prefect tasks on a local Dask cluster (flows/scale.py).

    seqcast bench scale [--n 100 1000] [--workers K] [--address tcp://host:8786]

For each N: generated series (length 400), fitted one after the other in this process
(serial), then mapped over Prefect tasks on the Dask cluster (parallel). The forecasts
must agree. The load-test model is a small ARIMA(1,1,0) (``--model``/``--order``
change it; the pipeline's own models keep their params.yaml settings). Prints a table;
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from flows.scale import generated_series, scale_flow, serial_fit
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(prog="seqcast bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--model", default="arima")
    parser.add_argument("--order", default="1,1,0", help="p,d,q of the load-test ARIMA")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--address", help="an existing Dask scheduler instead of a local cluster")
    parser.add_argument("--skip-serial-above", type=int, default=10**9,
                        help="extrapolate the serial time from the smallest N above this size")
    args = parser.parse_args(argv)
    overrides = {}
    if args.model == "arima":
        p, d, q = (int(v) for v in args.order.split(","))
        overrides = {"p": p, "d": d, "q": q, "maxiter": 50}
    serial_fit(generated_series(2, args.length), args.model, overrides=overrides)  # warm: imports, first fit
    rows = []
    per_series = None
    for n in args.n:
        series = generated_series(n, args.length)
        if n <= args.skip_serial_above or per_series is None:
            t0 = time.perf_counter()
            serial = serial_fit(series, args.model, overrides=overrides)
            serial_s = time.perf_counter() - t0
            per_series = serial_s / n
            measured = True
        else:
            serial, serial_s, measured = None, per_series * n, False
        out = scale_flow("generated", n, args.length, args.model, address=args.address,
                         n_workers=args.workers, overrides=overrides)
        if serial is not None:
            assert set(out["forecasts"]) == set(serial)
            for uid, fc in serial.items():
                np.testing.assert_allclose(out["forecasts"][uid], fc, rtol=1e-8)
        row = {"n": n, "serial_s": round(serial_s, 2), "serial_measured": measured,
               "parallel_s": round(out["seconds"], 2), "parallel_with_cluster_start_s":
                   round(out["seconds_with_cluster_start"], 2), "tasks": out["tasks"],
               "speedup": round(serial_s / out["seconds"], 2)}
        rows.append(row)
        print(f"N={n:>6}  serial {serial_s:8.1f}s{'' if measured else ' (extrapolated)'}  parallel {out['seconds']:8.1f}s"
              f"  (+cluster start {out['seconds_with_cluster_start']:.1f}s)  {out['tasks']} tasks  "
              f"speedup x{row['speedup']:.2f}", flush=True)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"scaling N {a['n']} -> {b['n']} (x{b['n'] / a['n']:.0f}): serial x{b['serial_s'] / a['serial_s']:.1f}, "
              f"parallel x{b['parallel_s'] / a['parallel_s']:.1f}")
    print(json.dumps({"benchmark": "scale", "model": args.model, "order": args.order, "length": args.length,
                      "workers": args.workers, "address": args.address, "cpu_count": os.cpu_count(),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
