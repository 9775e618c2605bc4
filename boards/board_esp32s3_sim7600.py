# ESP32-S3 handheld: SIMCom SIM7600 modem, u-blox class GNSS, serial scan engine, Sharp memory LCD.
BOARD = {
    "name": "esp32s3-sim7600",
    "mcu": "esp32s3",
    "arch": "xtensawin",  # mpy-cross -march, only matters for native/viper code
    "heap": 262144,  # MicroPython heap the firmware must live within (bytes)
    "uart": {
        "gnss": {"id": 1, "tx": 17, "rx": 18, "baud": 9600},
        "scanner": {"id": 2, "tx": 4, "rx": 5, "baud": 9600},
        "modem": {"id": 0, "tx": 43, "rx": 44, "baud": 115200},
        "dock": {"id": "usb", "tx": None, "rx": None, "baud": 115200},  # USB CDC data interface
    },
    "modem": {"dialect": "sim7600", "power_pin": 41, "apn": "iot.postal"},
    "display": {"driver": "sharp_ls", "width": 240, "height": 160, "spi": 1, "cs": 10},
    "buzzer": {"pin": 21},
    "led": {"pin": 38},
    "keys": {"ok": 0, "back": 14, "up": 15, "down": 16},
    "battery": {"adc_pin": 1, "divider": 2},
    "flash": {"block_size": 4096, "block_count": 1024},  # 4 MiB littlefs partition
    # ROMFS partition (MicroPython >= 1.25, partition type data/0x8f, mounted at /rom): 128 KiB, the
    # esp32 port's partitions-4MiB-romfs.csv default as far as we know; not checked on hardware.
    "romfs": {"bytes": 131072, "block_size": 4096},
    "fence_vertex_budget": 32,
}
