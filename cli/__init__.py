"""``seqcast``: the command line, the front door that sits on top of everything.

    seqcast run [--dataset NAME] [--prefect] [--force]   the pipeline (dvc repro: every dataset, or NAME's stages)
    seqcast datasets add NAME --file F --time C --target C [...]   a user's file becomes a dataset
    seqcast datasets list                       every dataset: source, series, frequency, rows, last run
    seqcast validate PATH... --dataset NAME     validate local files with that dataset's suite
    seqcast deploy                              register the Prefect deployments (schedules of the datasets)
    seqcast stack up|status|down                the team stack: PostgreSQL, MLflow, Prefect, Dask (127.0.0.1)
    seqcast report [--check]                    the results tables of docs/, written from reports/
    seqcast bench NAME [ARGS...]                run benchmarks/NAME.py; the last line printed is JSON
    seqcast ui [--port N]                       the MLflow UI on the pipeline's store (127.0.0.1)
    seqcast chat [ARGS...]                      talk to the fine-tuned GPT
"""
