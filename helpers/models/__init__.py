"""Networks and their files: the model config schema, building the physicsnemo networks,
checkpoints (saving, safe loading, initial weights, the facts beside them) and the
Earth2Studio package export."""
