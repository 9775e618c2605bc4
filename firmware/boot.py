# boot.py: mount the flash and nothing else heavy (main.py starts the application).
#
# littlefs that fails to mount is never reformatted (MicroPython's stock rp2 boot would, and erase
# a day of deliveries): the fault goes on the screen and boot stops with an exception, which makes
# the board skip main.py and leave the REPL to the depot, who can still read the raw flash.
# On a custom build this file is frozen as _boot.py; as /boot.py, the mount is already done.
from firmware import hal

_err = hal.mount_storage()
if _err:
    try:
        _d = hal.display()
        _d.fb.fill(0)
        _d.fb.text("STORAGE FAULT", 0, 0, 1)
        _y = 16
        while _err and _y < _d.height:
            _d.fb.text(_err[: _d.width // 8], 0, _y, 1)
            _err = _err[_d.width // 8:]
            _y += 10
        _d.fb.text("Return to depot", 0, _d.height - 10, 1)
        _d.show()
        hal.buzzer("error")
    finally:
        raise RuntimeError("storage fault: main.py not started, flash kept")
