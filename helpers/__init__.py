"""Training, checkpointing and distributed plumbing shared by the entry points."""
