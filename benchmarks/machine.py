"""What a benchmark ran on: recorded in every result JSON so numbers are never separated from it.
The one implementation lives in the library (also used by the rate-distortion reports)."""

from neuralfields.reports.machine import machine_info  # noqa: F401
