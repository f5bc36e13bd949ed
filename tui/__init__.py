"""The field TUI: `crisislens tui` (Textual). Reads and writes triage stores through `runtime`."""
