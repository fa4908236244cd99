"""The command line of a flow module run as a script — what each DVC stage runs
(``python -m flows.<stage> --dataset <d>``). Flows sit below the ``seqcast`` command
line and never import it; this is their own small entry point."""

from __future__ import annotations

import argparse

from seqcast.contract import DATASETS


class _FlowParser(argparse.ArgumentParser):
    """Parses a flow's arguments, then checks params.yaml: a bad value ends the process
    with the message (exit 2) before the flow starts, not with a traceback inside it."""

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        from seqcast.config import load_params
        from seqcast.errors import ParamsError

        try:
            load_params()
        except ParamsError as err:
            self.exit(2, err.render() + "\n")
        return parsed


def flow_parser(description: str | None, datasets: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """Applies the process settings (telemetry off), takes ``--dataset`` and refuses a
    params.yaml that breaks its schema before the flow runs."""
    from seqcast.env import configure

    configure()
    parser = _FlowParser(description=description)
    parser.add_argument("--dataset", choices=datasets or DATASETS, required=True)
    return parser
