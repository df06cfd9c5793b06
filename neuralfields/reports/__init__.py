"""Rate-distortion reports: sweeps of ordinary runs over layer kinds, ranks and widths, their
quantised re-evaluation, and tables, plots and a markdown report read from the run folders.
The library never imports this package; it reads runs through `neuralfields.runs`."""
