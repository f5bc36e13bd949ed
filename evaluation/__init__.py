"""CrisisLens evaluation: scoring models, apart from inference. Torch-free; it stands on the
runtime and the runtime never imports it.

- `metrics`: classification, calibration, rationale plausibility and faithfulness (numpy only);
- `datasets`: named labelled datasets under the data root, and labelled posts from any input;
- `score`: the predictions file and the one scoring path over it (`crisislens eval score`);
- `evaluate`: a bundle through the runtime on labelled posts (`crisislens eval --bundle`), and
  fitting its softmax temperature;
- `bench`, `bench_report`: one row per backend x precision (`crisislens bench`).
"""
