"""Depot tools: route compiler, enrolment, flashing, dock sync, ingest server, reports.

Formats shared with the device (records, route packages, dock frames, upload batches) have one
implementation in firmware/; it is put on sys.path here so host code imports the same modules.
"""

import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
BOARDS = FIRMWARE.parent / "boards"  # board_<name>.py files, also importable as modules
for _p in (str(BOARDS), str(FIRMWARE)):
    if _p not in sys.path:
        sys.path.append(_p)
