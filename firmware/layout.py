"""Where things live on the device's flash. Everything the carrier produced is under /data, which
a flash never writes; the firmware is in /lib and the identity in /config. (Data directories must
not share a name with a module: "" comes before /lib on sys.path, and a directory imports as a
namespace package.)"""

CONFIG = "/config/device.json"
DATA = "/data"
JOURNAL = "/data/journal"
ROUTE_DIR = "/data/route"
ACTIVE_ROUTE = "/data/route/active.pkg"
PROGRESS = "/data/route/progress"  # package hash + a bit per stop visited: the "next stop" hint
UPLOAD_DIR = "/data/upload"
