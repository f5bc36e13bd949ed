"""The triage store: `crisislens triage` writes predictions for files and folders of cached posts
into a SQLite store that survives Ctrl-C and kill -9.

- The store is SQLite in WAL mode; each batch of predictions is one transaction, so an
  interrupted run loses at most the batch in flight and never leaves a half-written row.
- Re-running with the same store resumes: posts already stored are skipped. A post is known by
  its id, its input and its content (`identity`), never its id alone: a post that changed in
  its input (a photo synced after its text) is triaged again, and a different post with a
  stored id (`p01.txt` of another folder) is stored as `p01#2`, never skipped.
- A post that cannot be predicted at all (it should not happen: unusable images and texts are
  warnings) is stored in `errors` with the reason, never silently dropped; so is a post the
  model saw nothing of (no word after cleaning, no usable photo), whose label would only be the
  model's prior; rows the readers reject are stored there too, with file and line. Each problem
  is stored once however often a run is repeated; a later run that predicts the post
  supersedes its run errors.
- A responder's review lives in the same file: the current state (reviewed, corrected label,
  flag) on the prediction row for filtering, and every action with its time in `feedback`, so
  corrections are kept as history and can be exported as labelled training data.

Modules: `sqlite` (the store), `tables` (its tables and migrations), `run` (the run loop),
`identity` (which stored post a read post is), `review` (what the TUI lists: filters, priority,
sorting), `export` (predictions and corrected labels out).
"""

from crisislens.runtime.store.export import CSV_COLUMNS, EXPORT_FORMATS, export_feedback, export_items, export_results
from crisislens.runtime.store.run import Progress, TriageResult, bucketed, triage
from crisislens.runtime.store.sqlite import NOTHING_TO_CLASSIFY, PREDICTION_FAILED, Feedback, StoreError, TriageStore
from crisislens.runtime.store.tables import FEEDBACK_ACTIONS, SCHEMA

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "FEEDBACK_ACTIONS",
    "NOTHING_TO_CLASSIFY",
    "PREDICTION_FAILED",
    "SCHEMA",
    "Feedback",
    "Progress",
    "StoreError",
    "TriageResult",
    "TriageStore",
    "bucketed",
    "export_feedback",
    "export_items",
    "export_results",
    "triage",
]
