"""The platform scenario's tests import the bad-variable checks the scenarios share (molecule/shared/refusal.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
