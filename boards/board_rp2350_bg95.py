# RP2350 (RP2040-compatible pinout) handheld: Quectel BG95 modem, GNSS, scan engine, Sharp memory LCD.
BOARD = {
    "name": "rp2350-bg95",
    "mcu": "rp2350",
    "arch": "armv7emsp",  # armv6m on an RP2040
    "heap": 196608,
    "uart": {
        "gnss": {"id": 0, "tx": 0, "rx": 1, "baud": 9600},
        "scanner": {"id": 1, "tx": 4, "rx": 5, "baud": 9600},
        "modem": {"id": "pio0", "tx": 8, "rx": 9, "baud": 115200},  # PIO UART: the chip has two
        "dock": {"id": "usb", "tx": None, "rx": None, "baud": 115200},
    },
    "modem": {"dialect": "bg95", "power_pin": 10, "apn": "iot.postal"},
    "display": {"driver": "sharp_ls", "width": 240, "height": 160, "spi": 0, "cs": 17},
    "buzzer": {"pin": 22},
    "led": {"pin": 25},
    "keys": {"ok": 12, "back": 13, "up": 14, "down": 15},
    "battery": {"adc_pin": 29, "divider": 3},
    "flash": {"block_size": 4096, "block_count": 768},  # 3 MiB littlefs partition
    # ROMFS partition (MicroPython >= 1.25: MICROPY_HW_ROMFS_BYTES, between the firmware and
    # littlefs, mounted at /rom): 256 KiB, the rp2 port's size as far as we know; not checked on
    # hardware.
    "romfs": {"bytes": 262144, "block_size": 4096},
    "fence_vertex_budget": 32,
}
