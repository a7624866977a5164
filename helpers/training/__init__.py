"""Training: the config schema, the loop (`helpers.training.loop.Trainer`) and its parts:
losses, data order, patch groups, learning-rate schedule, regression cache and reporting."""
