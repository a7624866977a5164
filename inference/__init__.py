"""Reading, scoring and plotting files written by ``generate.py`` (run the CLIs from the
repository root: ``python -m inference.<module> ...``).

- ``read_netcdf``: one lazily loaded xarray Dataset per generated file
- ``metrics``, ``scoring``, ``score_table``: ensemble scores (used by ``score_samples.py``)
- ``power_spectra``: spectra, autocorrelation and a patch-size recommendation (CLI)
- ``plot_single_sample``, ``plot_multiple_samples``: PNG maps (CLIs); ``plotting``: shared bits
- ``synthetic``: generated-layout files with known statistics (tests, benchmark, trying things)
"""
