"""Depot tools: route compiler, enrolment, flashing, dock sync, ingest server, reports.

Formats shared with the device (records, route packages, dock frames, upload batches) have one
implementation, in the firmware package: host code imports them as `from firmware import record`.
"""

from firmware import __version__  # noqa: F401  (the one version, also the wheel's)
