"""CrisisLens on a Ray cluster: `crisislens triage INPUT... --engine ray --parquet DIR` triages an
archive of millions of posts with the same bundle and the same answers as one machine, and
`crisislens store import DIR` brings its shards into a triage store the app opens.

Needs the `cluster` extra (`pip install 'crisislens[cluster]'`: Ray Data and pyarrow); the
runtime never imports this package: the CLI finds it through entry points.

Modules: `run` (the driver: Ray Data pipeline, shards written as they complete), `sources`
(reading the inputs in parallel, cut into shards), `parquet` (Parquet inputs), `predictor`
(the model on an actor), `bundles` (the bundle on every worker, checked), `shards` (the shard
folder's format), `importer` (shards into a triage store), `bench` (the cluster path against
plain `crisislens triage`), `cli` (the commands).
"""
