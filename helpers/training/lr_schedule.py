"""Learning rate as a function of samples seen: linear ramp-up, then step decay.

Computed from scratch for every step, so it never compounds and a resumed run continues on the
same curve.
"""

from __future__ import annotations


def learning_rate(samples_seen: int, base_lr: float, rampup: int = 0, decay: float = 1.0,
                  decay_rate: int = 1) -> float:
    """``base_lr * min(samples / rampup, 1) * decay ** ((samples - rampup) // decay_rate)``."""
    lr = base_lr
    if rampup > 0:
        lr *= min(samples_seen / rampup, 1.0)
    if decay != 1.0:
        lr *= decay ** (max(samples_seen - rampup, 0) // decay_rate)
    return lr
