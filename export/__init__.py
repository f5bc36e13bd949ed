"""CrisisLens export stage (see the issues for what it will hold)."""
