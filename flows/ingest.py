"""Ingest flow: upstream (retried) or mirror -> raw copy + tidy table, per dataset.

``python -m flows.ingest --dataset market`` is the DVC stage's command.
"""

from __future__ import annotations


from prefect import flow, get_run_logger, task

from seqcast.config import load_params
from seqcast.contract import DATASETS, UNIQUE_ID
from tasks import ingest


# retries and their delays come from params.yaml (ingest.*), set with .with_options in the flow
@task(name="download-market", timeout_seconds=300)
def download_market(ticker, start, end, dest, timeout):
    return ingest.download_market_upstream(ticker, start, end, dest, timeout)


@task(name="download-url", timeout_seconds=600)
def download_url(url, dest, timeout):
    return ingest.download_url(url, dest, timeout)


@flow(name="ingest", log_prints=True)
def ingest_flow(dataset: str = "market") -> str:
    """Fetch and tidy one dataset; returns the path of its tidy table (the raw copy for text)."""
    if dataset not in (*DATASETS, "text"):
        raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS + ('text',)}")
    logger = get_run_logger()
    params = load_params()
    delays = params.ingest.retry_delay_seconds
    if dataset == "text":  # the P3 corpus: a raw copy, no table
        fetch = download_url.with_options(retries=params.ingest.retries, retry_delay_seconds=delays)
        got = ingest.ingest_text(params, fetch)
        logger.info("text: source=%s origin=%s raw=%s", got.source, got.origin, got.raw)
        return got.raw
    if dataset == "market":
        fetch = download_market.with_options(retries=params.ingest.retries, retry_delay_seconds=delays)
        tidy, fetched = ingest.ingest_market(params, fetch)
    else:
        fetch = download_url.with_options(retries=params.ingest.retries, retry_delay_seconds=delays)
        tidy, fetched = ingest.ingest_pm25(params, fetch)
    table = params.path("tidy", f"{dataset}.parquet")
    ingest.write_table(tidy, fetched, table)
    for f in fetched:
        logger.info("%s/%s: source=%s origin=%s raw=%s", dataset, f.unique_id, f.source, f.origin, f.raw)
    counts = tidy.groupby(UNIQUE_ID).size().to_dict()
    logger.info("%s: %d rows in %s %s", dataset, len(tidy), table, counts)
    return str(table)


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__, (*DATASETS, "text"))
    args = parser.parse_args(argv)
    return ingest_flow(args.dataset)


if __name__ == "__main__":
    main()
