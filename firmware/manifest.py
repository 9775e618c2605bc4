# What a handheld gets, said once (micropython-lib's manifest style). `depot flash` installs it
# and the simulator boots it; a module not listed here stays on the host.
# Read by host_tools/manifest.py, which supplies metadata(), package() and root().
# pyright: reportUndefinedVariable=false
metadata(description="Postal scanner handheld firmware")  # noqa: F821

# /lib/firmware/<name>.mpy: compiled with mpy-cross for the board's architecture.
package(  # noqa: F821
    "firmware",
    files=(
        "__init__.py",
        "layout.py",  # where things live on the flash
        "hal.py",  # the hardware boundary
        "boot.py",  # mounts the flash (run from /boot.py)
        "main.py",  # the application: one task per device stream
        "ui.py",
        "delivery.py",
        "record.py",
        "journal.py",
        "sign.py",
        "route_package.py",
        "route_package_check.py",  # the proof a package passes: loaded for an open only
        "geofence.py",
        "nmea.py",  # GNSS: the stream and the fix state
        "nmea_fields.py",
        "nmea_sentences.py",
        "nmea_text.py",  # the fix state as text: tools only, the app never imports it
        "scan_code.py",
        "scan_code_format.py",  # a route's own code formats: no route carries them yet
        "dock.py",  # the dock port: parked all day, loads dock_session when a host speaks
        "dock_session.py",
        "dock_wire.py",
        "dock_route_inbox.py",
        "modem.py",
        "modem_http.py",  # a post over the modem's HTTP stack (plain http://), loaded per post
        "modem_tls.py",  # a post over the modem's TLS stack (https://), loaded per post
        "upload_wire.py",
        "uploader.py",
    ),
    base_path="..",
)

# /boot.py and /main.py: the entry points a board runs at power-up, kept as source; each only
# imports the package.
root("entry/boot.py", "entry/main.py")  # noqa: F821
