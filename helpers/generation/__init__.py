"""Generation: the config schema, choosing times, and the ensemble generator that writes the
NetCDF file."""
