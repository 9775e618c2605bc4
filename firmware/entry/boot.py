# /boot.py on the device: a board runs it first. The firmware package mounts the flash
# (firmware/boot.py); an exception there stops the boot, so main.py does not run.
from firmware import boot  # noqa: F401
