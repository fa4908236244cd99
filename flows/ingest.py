"""Ingest flow: each source of a dataset (upstream, retried, or the mirror; or a user's file)
-> raw copies + the tidy table. ``--text``: the language models' corpus (a raw copy, no table).

``python -m flows.ingest --dataset <name>`` (and ``--text``) are the DVC stages' commands.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from seqcast.config import load_params
from seqcast.contract import UNIQUE_ID
from tasks import ingest


# retries and their delays come from params.yaml (ingest.*), set with .with_options in the flow
@task(name="download-yahoo", timeout_seconds=300)
def download_yahoo(symbol, start, end, dest, timeout):
    from tasks.connectors import yahoo

    return yahoo.download(symbol, start, end, dest, timeout)


@task(name="download-url", timeout_seconds=600)
def download_url(url, dest, timeout):
    return ingest.download_url(url, dest, timeout)


def downloads(params) -> ingest.Downloads:
    """The download tasks with the retry policy of params.yaml (``ingest.retries``, delays)."""
    policy = {"retries": params.ingest.retries, "retry_delay_seconds": params.ingest.retry_delay_seconds}
    return ingest.Downloads(url=download_url.with_options(**policy), yahoo=download_yahoo.with_options(**policy))


@flow(name="ingest", log_prints=True)
def ingest_flow(dataset: str) -> str:
    """Fetch and tidy one dataset; returns the path of its tidy table."""
    logger = get_run_logger()
    params = load_params()
    params.dataset(dataset)  # an unknown name: a KeyError listing the datasets
    tidy, fetched = ingest.ingest_dataset(dataset, params, downloads(params))
    table = params.path("tidy", f"{dataset}.parquet")
    ingest.write_table(tidy, fetched, table)
    for f in fetched:
        logger.info("%s/%s: source=%s origin=%s raw=%s", dataset, f.unique_id, f.source, f.origin, f.raw)
    counts = tidy.groupby(UNIQUE_ID, sort=False).size().to_dict()
    logger.info("%s: %d rows in %s %s", dataset, len(tidy), table, counts)
    return str(table)


@flow(name="ingest-text", log_prints=True)
def ingest_text_flow() -> str:
    """The text corpus of the language models: a byte-for-byte raw copy."""
    params = load_params()
    got = ingest.ingest_text(params, downloads(params).url)
    get_run_logger().info("text: source=%s origin=%s raw=%s", got.source, got.origin, got.raw)
    return got.raw


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__, required=False)
    parser.add_argument("--text", action="store_true", help="the language models' corpus instead of a dataset")
    args = parser.parse_args(argv)
    if args.text:
        return ingest_text_flow()
    if not args.dataset:
        parser.error("--dataset NAME or --text")
    return ingest_flow(args.dataset)


if __name__ == "__main__":
    main()
