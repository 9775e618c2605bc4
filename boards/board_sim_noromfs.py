# The virtual handheld as a MicroPython build without ROMFS (before 1.25, or a port built without
# MICROPY_VFS_ROM): the sim board without its partition, so `depot flash` installs the firmware as
# .mpy files on littlefs. (Standalone, as every board file: a device imports no other.)
BOARD = {
    "name": "sim-noromfs",
    "mcu": "unix",
    "arch": None,
    "heap": 262144,
    "uart": {
        "gnss": {"id": "gnss", "tx": None, "rx": None, "baud": 9600},
        "scanner": {"id": "scanner", "tx": None, "rx": None, "baud": 9600},
        "modem": {"id": "modem", "tx": None, "rx": None, "baud": 115200},
        "dock": {"id": "dock", "tx": None, "rx": None, "baud": 115200},
    },
    "modem": {"dialect": "sim7600", "power_pin": None, "apn": "sim"},
    "display": {"driver": "framebuf", "width": 240, "height": 160},
    "buzzer": {"pin": None},
    "led": {"pin": None},
    "keys": {"ok": "ok", "back": "back", "up": "up", "down": "down"},
    "battery": {"adc_pin": None, "divider": 1},
    "flash": {"block_size": 4096, "block_count": 512},  # 2 MiB image file
    "romfs": None,
    "fence_vertex_budget": 32,
}
