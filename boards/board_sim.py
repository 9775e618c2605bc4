# The virtual handheld (python -m sim device): every UART is a pty or pipe the simulator opens.
BOARD = {
    "name": "sim",
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
    # ROMFS partition: the image file <flash>.romfs beside the littlefs image, mounted at /rom
    # (sim/vm/romdev.py). 128 KiB as the esp32s3 board; the firmware's image is about 74 KB.
    "romfs": {"bytes": 131072, "block_size": 4096},
    "fence_vertex_budget": 32,
}
