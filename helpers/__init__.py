"""Training, generation, checkpointing and distributed plumbing shared by the entry points."""

__version__ = "0.1.0"
