"""Where things live on the device's flash. Everything the carrier produced is under /data, which
a flash never writes; the firmware is the package /lib/firmware (entry points /boot.py and /main.py
import it) and the identity is in /config. (Data directories must not share a name with a module:
"" comes before /lib on sys.path, and a directory imports as a namespace package.)"""

FIRMWARE_DIR = "/lib/firmware"  # the package (firmware/manifest.py) and board.mpy, the board definition

CONFIG = "/config/device.json"
SERVER_CA = "/config/server_ca.pem"  # the depot's CA the modem pins https:// uploads to (if any)
DATA = "/data"
JOURNAL = "/data/journal"
ROUTE_DIR = "/data/route"
ACTIVE_ROUTE = "/data/route/active.pkg"
PROGRESS = "/data/route/progress"  # package hash + a bit per stop visited: the "next stop" hint
UPLOAD_DIR = "/data/upload"
