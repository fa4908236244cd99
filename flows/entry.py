"""The command line of a flow module run as a script — what each DVC stage runs
(``python -m flows.<stage> --dataset <d>``). Flows sit below the ``seqcast`` command
line and never import it; this is their own small entry point."""

from __future__ import annotations

import argparse

from seqcast.contract import DATASETS


def flow_parser(description: str | None, datasets: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """Applies the process settings (telemetry off) and takes ``--dataset``."""
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", choices=datasets or DATASETS, required=True)
    return parser
