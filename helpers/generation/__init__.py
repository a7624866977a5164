"""Generation: the config schema, choosing times, loading and checking the networks
(`checkpoints`), the ensemble generator that writes the NetCDF file (`ensemble`) and its
background reading and writing (`background_io`)."""
