"""The handheld's firmware, one package on the device (/lib/firmware/) and on the host, where the
formats it shares with the depot (records, route packages, dock frames, upload batches) are
imported from it: `from firmware import record`. What a device gets: firmware/manifest.py."""

__version__ = "0.1.0"  # the one version: firmware, `depot --version` and the wheel (pyproject)
