"""Evaluation, not inference: the generated-file format and the reading, scoring and plotting
of files written by ``generate.py`` (run the CLIs from the repository root:
``python -m inference.<module> ...``). Importable without torch or physicsnemo.

- ``generated_file``: the file's layout, its writer (used by generation) and its reader
- ``metrics``, ``score_metrics``, ``scoring``, ``score_table``: ensemble scores (per-point
  functions, the metric objects, the driver, the table; used by ``score_samples.py``)
- ``power_spectra``: spectra, autocorrelation and a patch-size recommendation (CLI)
- ``plot_single_sample``, ``plot_multiple_samples``: PNG maps (CLIs); ``plotting``: shared bits
- ``synthetic``: generated-layout files with known statistics (tests, benchmark, trying things)
"""
