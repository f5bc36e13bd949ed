"""The triage store's tables, and the columns added on open to stores written before them."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    post_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    prediction TEXT NOT NULL,          -- Prediction.to_json(): probabilities, rationales, warnings
    text TEXT,
    image TEXT,
    source TEXT,
    created_at TEXT,
    gold_label TEXT,
    latency_ms REAL,
    bundle_sha256 TEXT NOT NULL,
    variant TEXT NOT NULL,
    reviewed INTEGER NOT NULL DEFAULT 0,
    review_label TEXT,
    stored_at TEXT NOT NULL,
    flagged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS errors (
    post_id TEXT,
    where_ TEXT,
    message TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    post_id TEXT NOT NULL,
    action TEXT NOT NULL,              -- one of FEEDBACK_ACTIONS
    label TEXT,                        -- the responder's label (action 'label')
    model_label TEXT NOT NULL,         -- what the model said
    note TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_label ON predictions(label);
CREATE INDEX IF NOT EXISTS feedback_post ON feedback(post_id);
-- who each prediction is (store.identity): the id its input gave it, the input, a content digest
CREATE TABLE IF NOT EXISTS identities (
    post_id TEXT PRIMARY KEY,
    input_id TEXT NOT NULL,
    place TEXT,
    fingerprint TEXT
);
"""
FEEDBACK_ACTIONS = ("label", "reviewed", "unreviewed", "flag", "unflag")
# Stores written before the review columns existed get them on open; so do the columns that say
# where a post came from (reader's origin, platform, author) and its text as read before a repair.
PROVENANCE = ("origin", "platform", "author", "original_text")
MIGRATIONS = {
    "flagged": "ALTER TABLE predictions ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0",
    **{column: f"ALTER TABLE predictions ADD COLUMN {column} TEXT" for column in PROVENANCE},
}
