"""The README's generated rate-distortion table matches the committed reports."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_rate_distortion_table_is_generated_from_the_committed_reports():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rd_readme.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
