"""The command line of a flow module run as a script — what each DVC stage runs
(``python -m flows.<stage> --dataset <d>``). Flows sit below the ``seqcast`` command
line and never import it; this is their own small entry point."""

from __future__ import annotations

import argparse


class _FlowParser(argparse.ArgumentParser):
    """Parses a flow's arguments, then checks params.yaml: a bad value (or a dataset that
    params.yaml does not have) ends the process with the message (exit 2) before the flow
    starts, not with a traceback inside it."""

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        from seqcast.config import load_params
        from seqcast.errors import ParamsError

        try:
            params = load_params()
        except ParamsError as err:
            self.exit(2, err.render() + "\n")
        dataset = getattr(parsed, "dataset", None)
        if dataset is not None and dataset not in params.datasets:
            self.exit(2, f"{self.prog}: unknown dataset {dataset!r}; params.yaml datasets: "
                         f"{', '.join(params.datasets)}\n")
        return parsed


def flow_parser(description: str | None, required: bool = True) -> argparse.ArgumentParser:
    """Applies the process settings (telemetry off), takes ``--dataset`` (a name of params.yaml's
    ``datasets``) and refuses a params.yaml that breaks its schema before the flow runs."""
    from seqcast.env import configure

    configure()
    parser = _FlowParser(description=description)
    parser.add_argument("--dataset", required=required, metavar="NAME", help="a dataset of params.yaml")
    return parser
