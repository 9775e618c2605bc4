"""The virtual handheld: real MicroPython VM, real littlefs on the emulated flash, real mpremote."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest
from PIL import Image

from sim.client import Device
from sim.mpy import FIRMWARE, VM_DIR

pytestmark = pytest.mark.slow

MPREMOTE = str(Path(sys.executable).parent / "mpremote")

# A test fixture main.py (runs on the device): draws on the screen at boot, logs every scanner, key
# and GNSS line to /log.txt, flushed (closed) before the beep, and beeps `ready` once its readers
# listen (what the tests wait for, as the application's own power-up beep).
FIXTURE_MAIN = """\
import asyncio
from firmware import hal

d = hal.display()
d.fb.fill(0)
d.fb.rect(0, 0, d.width, d.height, 1)
d.fb.text("HELLO SIM", 8, 8, 1)
d.show()


def log(line):
    with open("/log.txt", "a") as f:
        f.write(line + "\\n")
    hal.buzzer("ok")


async def scanner():
    r = asyncio.StreamReader(hal.open_uart("scanner"))
    chunk = bytearray(64)
    buf = b""
    while True:
        buf += chunk[: await r.readinto(chunk)]
        while b"\\r" in buf:
            code, buf = buf.split(b"\\r", 1)
            log("scan:" + code.decode())


async def lines(stream, tag):
    r = asyncio.StreamReader(stream)
    while True:
        log(tag + (await r.readline()).decode().strip())


async def ready():
    await asyncio.sleep_ms(0)  # every reader has started by now
    hal.buzzer("ready")


async def main():
    await asyncio.gather(scanner(), lines(hal.open_keys(), "key:"),
                         lines(hal.open_uart("gnss"), "gnss:"), ready())

asyncio.run(main())
"""


def mpremote(dev: Device, *args: str) -> str:
    proc = subprocess.run([MPREMOTE, "connect", dev.console, *args], capture_output=True, timeout=30)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, f"mpremote {args} failed:\n{out}\n{proc.stderr.decode(errors='replace')}"
    return out.replace("\r\n", "\n")


def wait_events(dev: Device, kind: str, n: int, timeout: float = 10.0) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        evs = [e for e in dev.events() if e["kind"] == kind]
        if len(evs) >= n:
            return evs
        time.sleep(0.05)
    raise AssertionError(f"{n} {kind} events expected, got {dev.events()}")


# mpremote arguments that install the firmware package with only its hal (and no board.py: the
# virtual handheld's board is the hal's fallback)
HAL_ONLY = ("fs", "mkdir", "lib", "+", "fs", "mkdir", "lib/firmware",
            "+", "fs", "cp", str(FIRMWARE / "__init__.py"), ":lib/firmware/__init__.py",
            "+", "fs", "cp", str(FIRMWARE / "hal.py"), ":lib/firmware/hal.py")


def restart(dev: Device) -> int:
    """Reboot into the fixture main.py and wait until it listens; returns the boot count."""
    since = len(dev.events())
    dev.reboot()
    dev.wait_ready(since)
    return dev.status()["boots"]


def beeps(dev: Device) -> int:
    return len([e for e in dev.events() if e["kind"] == "buzzer"])


def install(dev: Device, tmp: Path) -> str:
    """Flash hal.py and the fixture main.py with mpremote; returns mpremote's output."""
    main = tmp / "main.py"
    main.write_text(FIXTURE_MAIN)
    script = tmp / "hello.py"
    script.write_text("import os\nprint('files', sorted(os.listdir('/')))\n")
    return mpremote(dev, *HAL_ONLY, "+", "fs", "cp", str(main), ":main.py", "+", "exec", "print(6 * 7)",
                    "+", "run", str(script))


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory):
    """One virtual handheld for the module, flashed with hal.py and the fixture main.py."""
    work = tmp_path_factory.mktemp("simdev")
    dev = Device.start(work / "flash.img", workdir=work / "run")
    dev.wait_idle()
    install(dev, work)
    yield dev
    dev.stop()


def test_blank_image_boots_formatted_and_mpremote_soft_resets(tmp_path: Path) -> None:
    with Device.start(tmp_path / "blank.img", workdir=tmp_path / "run") as dev:
        dev.wait_idle()
        assert "blank flash, formatting littlefs" in dev.console_text()
        boots = dev.status()["boots"]
        assert mpremote(dev, "fs", "ls") == "ls :\n"
        st = dev.status()
        # mpremote's default auto soft reset: Ctrl-D in the raw REPL restarted the VM into the raw REPL
        assert st["boots"] == boots + 1 and st["last_exit"] == 4
        assert "MPY: soft reboot" in dev.console_text()
        out = install(dev, tmp_path)
        assert "42\n" in out
        assert "files ['lib', 'main.py']" in out
        assert mpremote(dev, "fs", "cat", "main.py") == FIXTURE_MAIN
        assert "hal.py" in mpremote(dev, "fs", "ls", "lib/firmware")


def test_main_gets_scans_keys_gnss_and_ctrl_c_interrupts_it(device: Device) -> None:
    mpremote(device, "exec", "import os\ntry:\n    os.remove('log.txt')\nexcept OSError:\n    pass")
    restart(device)
    n0 = beeps(device)
    device.scan("RR473124829GB")
    device.scan("00340123450000000018", symbology="]d2")
    device.key("ok")
    device.gnss(["$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"])
    wait_events(device, "buzzer", n0 + 4)
    assert device.status()["state"] == "R"  # main.py still running
    # mpremote's Ctrl-C stops the asyncio app, as on a board
    log = mpremote(device, "fs", "cat", "log.txt").splitlines()
    assert sorted(log) == sorted(["scan:]C0RR473124829GB", "scan:]d200340123450000000018", "key:ok",
                                  "gnss:$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"])
    assert "KeyboardInterrupt" in device.console_text()


def test_mpremote_right_after_reset_interrupts_main_as_it_starts(device: Device) -> None:
    boots = device.status()["boots"]
    device.reboot()
    device.wait_for(lambda s: s["boots"] > boots)  # connect while the VM is still booting
    assert "main.py" in mpremote(device, "fs", "ls")


def test_screenshot_is_board_size_x2_and_not_blank(device: Device, tmp_path: Path) -> None:
    restart(device)  # main.py drew before it listened
    out = tmp_path / "screen.png"
    reply = device.screenshot(out)
    img = Image.open(out)
    assert img.size == (480, 320) == (reply["width"], reply["height"])
    dark = img.convert("L").histogram()[0]
    assert 0 < dark < 480 * 320 // 4  # the frame and the text, on a light panel


def test_cli_screenshot(device: Device, tmp_path: Path) -> None:
    out = tmp_path / "cli.png"
    subprocess.run([sys.executable, "-m", "sim", "screenshot", "--control", device.info["control"],
                    "--out", str(out)], check=True, capture_output=True, timeout=30)
    assert Image.open(out).size == (480, 320)


def test_power_cut_keeps_flushed_scans_and_loses_the_cut_one(device: Device) -> None:
    boots = restart(device)
    n0 = beeps(device)
    device.scan("CUT-BEFORE-1")
    device.scan("CUT-BEFORE-2")
    wait_events(device, "buzzer", n0 + 2)
    device.power_cut(after_writes=0)  # the next block write never reaches the chip
    device.scan("CUT-DURING")
    device.wait_off()
    assert beeps(device) == n0 + 2  # no beep for it
    device.power_on()
    device.wait_running(boots=boots + 1)
    log = mpremote(device, "fs", "cat", "log.txt")
    assert "scan:]C0CUT-BEFORE-1\nscan:]C0CUT-BEFORE-2\n" in log
    assert "CUT-DURING" not in log


def test_power_cut_out_of_order_mid_write_still_mounts(device: Device) -> None:
    boots = restart(device)
    n0 = beeps(device)
    device.scan("OOO-BEFORE")
    wait_events(device, "buzzer", n0 + 1)
    device.power_cut(after_writes=1, ooo=True)  # one more block write lands, then the chip dies
    for i in range(5):
        device.scan(f"OOO-DURING-{i}")
    device.wait_off()
    device.power_on()
    device.wait_running(boots=boots + 1)
    assert "scan:]C0OOO-BEFORE\n" in mpremote(device, "fs", "cat", "log.txt")


def test_power_cut_now_and_image_persists(device: Device) -> None:
    boots = restart(device)
    n0 = beeps(device)
    device.scan("BEFORE-CUT-NOW")
    wait_events(device, "buzzer", n0 + 1)
    device.power_cut()
    device.wait_off()
    device.power_on()
    device.wait_running(boots=boots + 1)
    device.reboot()
    device.wait_running(boots=boots + 2)
    assert "scan:]C0BEFORE-CUT-NOW" in mpremote(device, "fs", "cat", "log.txt")


def test_dock_link_is_limited_to_115200_baud(device: Device) -> None:
    # The fixture main.py does not open the dock: read the device side ourselves.
    dev_side = os.open(device.info["uart"]["dock"], os.O_RDWR | os.O_NOCTTY)
    host_side = os.open(device.dock, os.O_RDWR | os.O_NOCTTY)
    try:
        payload = bytes(range(256)) * 40  # 10 KiB
        t0 = time.monotonic()
        os.write(host_side, payload)
        got = b""
        while len(got) < len(payload) and time.monotonic() - t0 < 10:
            got += os.read(dev_side, 4096)
        elapsed = time.monotonic() - t0
    finally:
        os.close(dev_side)
        os.close(host_side)
    assert got == payload
    assert elapsed >= 0.8  # 10,240 bytes at 11,520 B/s take 0.89 s


def test_corrupt_image_is_reported_and_never_reformatted(tmp_path: Path) -> None:
    image = tmp_path / "corrupt.img"
    junk = bytes((i * 7 + 3) & 0xFF for i in range(4096)) * 4
    image.write_bytes(junk + b"\xff" * (4096 * 508))
    before = image.read_bytes()
    with Device.start(image, workdir=tmp_path / "run") as dev:
        dev.wait_idle()
        assert "NOT reformatting" in dev.console_text()
    assert image.read_bytes() == before


def test_gnss_walk_feeds_the_uart_at_the_requested_cadence(device: Device) -> None:
    restart(device)
    n0 = beeps(device)
    device.gnss_walk([(48.1, 11.5), (48.1005, 11.5)], period=0.05, seed=1,
                     conditions={"cold_start_s": 0, "noise_m": 1.0})
    wait_events(device, "buzzer", n0 + 2)  # a second's RMC and GGA logged
    device.gnss_stop()
    today = time.strftime("%d%m%y", time.gmtime())
    log = mpremote(device, "fs", "cat", "log.txt")
    assert "gnss:$GPRMC," in log and "gnss:$GPGGA," in log
    rmc = next(line for line in log.splitlines() if line.startswith("gnss:$GPRMC,")).split(",")
    assert rmc[9] == today  # the receiver keeps the world's clock, not a fixed day


def test_gnss_replay_of_a_log(device: Device, tmp_path: Path) -> None:
    nmea = tmp_path / "walk.nmea"
    nmea.write_text("$GPGGA,080000.00,4806.0000,N,01130.0000,E,1,09,0.9,520.0,M,47.0,M,,*6A\r\n"
                    "$GPGGA,080001.00,4806.0010,N,01130.0000,E,1,09,0.9,520.0,M,47.0,M,,*6B\r\n")
    restart(device)
    n0 = beeps(device)
    device.gnss_replay(nmea, period=0.05)
    wait_events(device, "buzzer", n0 + 2)
    log = mpremote(device, "fs", "cat", "log.txt")
    assert "gnss:$GPGGA,080000.00," in log and "gnss:$GPGGA,080001.00," in log


def test_dock_faults_drop_flip_and_unplug(device: Device) -> None:
    dev_side = os.open(device.info["uart"]["dock"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    host_side = os.open(device.dock, os.O_RDWR | os.O_NOCTTY)

    def through(payload: bytes, settle: float = 0.3) -> bytes:
        os.write(host_side, payload)
        time.sleep(len(payload) / 11520 + settle)
        try:
            return os.read(dev_side, 65536)
        except BlockingIOError:
            return b""

    try:
        device.dock_fault(unplug=True)
        assert through(b"x" * 100) == b""
        device.dock_fault(unplug=False, flip=1.0)
        got = through(b"\x00" * 200)
        assert len(got) == 200 and all(bin(b).count("1") == 1 for b in got)  # one bit flipped in each
        device.dock_fault(flip=0.0, drop=0.5)
        got = through(b"y" * 1000)
        assert 300 < len(got) < 700 and set(got) == {ord("y")}
        device.dock_fault(drop=0.0)
        assert through(b"clean") == b"clean"
    finally:
        device.dock_fault(drop=0.0, flip=0.0, unplug=False)
        os.close(dev_side)
        os.close(host_side)


def test_two_devices_run_at_once(device: Device, tmp_path: Path) -> None:
    with Device.start(tmp_path / "second.img", workdir=tmp_path / "run") as other:
        assert other.console != device.console and other.info["control"] != device.info["control"]
        other.wait_idle()
        assert mpremote(other, "exec", "print('second')").strip() == "second"
    assert device.status()["vm"] == "on"


def test_shim_flash_path_allocates_nothing(mpy, tmp_path: Path) -> None:
    """Erase, program, read and sync through the shim's flash (power switch and wear log included)
    run under heap_lock, so the simulator adds nothing to the firmware's heap figures."""
    power = tmp_path / "power"
    power.write_bytes(b" " * 32)
    out = mpy(f"""
        import micropython, shim
        dev = shim.SimFlash(4096, 16, "{tmp_path}/f.img", "{power}", "{tmp_path}/f.img.wear")
        buf = bytearray(256)
        def cycle():
            micropython.heap_lock()
            try:
                dev.ioctl(6, 3)
                dev.writeblocks(3, buf, 0)
                dev.readblocks(3, buf, 0)
                dev.ioctl(3, 0)
            finally:
                micropython.heap_unlock()
        cycle()
        print(dev.writes, dev.wear[3])
        """, extra_paths=(VM_DIR,))
    assert out.split() == ["2", "1"]


def _expect(fd: int, marker: bytes, timeout: float = 10.0) -> bytes:
    got = b""
    end = time.monotonic() + timeout
    while marker not in got and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            got += os.read(fd, 4096)
    assert marker in got, f"{marker!r} not in {got!r}"
    return got


def test_friendly_and_raw_repl_by_hand(device: Device) -> None:
    fd = os.open(device.console, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        os.write(fd, b"\r\x03\x03")  # stop main.py, as a person at the REPL would
        device.wait_idle()
        os.write(fd, b"\x02")
        _expect(fd, b">>> ")
        os.write(fd, b"print(6 * 7)\r")
        assert b"42" in _expect(fd, b"42")
        os.write(fd, b"\x01")  # raw REPL without raw-paste: OK, output, EOF, errors, EOF, prompt
        _expect(fd, b"raw REPL; CTRL-B to exit\r\n>")
        os.write(fd, b"print('raw')\x04")
        assert _expect(fd, b"\x04\x04>").endswith(b"OKraw\r\n\x04\x04>")  # CR LF, as a board
        os.write(fd, b"1/0\x04")
        assert b"ZeroDivisionError" in _expect(fd, b"\x04>")
        os.write(fd, b"\x02")  # back to the friendly REPL; Ctrl-D there soft-reboots into main.py
        _expect(fd, b">>> ")
        boots = device.status()["boots"]
        os.write(fd, b"\x04")
        _expect(fd, b"MPY: soft reboot\r\n")
        device.wait_running(boots=boots + 1)
    finally:
        os.close(fd)


def test_battery_and_led_through_hal_on_the_device(device: Device) -> None:
    device.set_battery(3550)
    n0 = len(device.events())
    out = mpremote(device, "exec", "from firmware import hal; hal.led('warn'); print(hal.battery_mv())")
    assert out.strip() == "3550"
    # Other kinds may interleave (a start-up beep still relayed, the app the soft reset restarts):
    # the led's first change after the exec is the warning.
    leds = [e["value"] for e in device.events(n0) if e["kind"] == "led"]
    assert leds[:1] == ["warn"]


def test_hal_peripherals_without_the_shim(mpy, tmp_path: Path) -> None:
    """Firmware run straight on `micropython` (the mpy fixture) opens the SIM_* paths itself."""
    screen, events, battery = tmp_path / "screen.fb", tmp_path / "events", tmp_path / "battery"
    screen.write_bytes(bytes(240 * 160 // 8))
    events.write_bytes(b"")
    battery.write_bytes(b"3700\n")
    env = {"SIM_SCREEN": str(screen), "SIM_EVENTS": str(events), "SIM_BATTERY": str(battery)}
    code = "import os\n" + "".join(f"os.putenv({k!r}, {v!r})\n" for k, v in env.items()) + """
from firmware import hal
d = hal.display()
d.fb.fill(0)
d.fb.pixel(0, 0, 1)
d.fb.pixel(239, 159, 1)
d.show()
hal.buzzer("ok")
hal.buzzer("no-such-pattern")
print(d.width, d.height, hal.battery_mv())
"""
    assert mpy(code).split() == ["240", "160", "3700"]
    fb = screen.read_bytes()
    assert fb[0] == 0x80 and fb[-1] == 0x01 and sum(fb) == 0x81
    assert events.read_text() == "buzzer ok\nbuzzer error\n"


def test_other_board_sets_flash_geometry_and_hal_board(tmp_path: Path) -> None:
    image = tmp_path / "rp2.img"
    with Device.start(image, board="rp2350-bg95", workdir=tmp_path / "run") as dev:
        dev.wait_idle()
        out = mpremote(dev, *HAL_ONLY, "+", "exec",
                       "from firmware import hal; import os; print(hal.board()['name'], os.statvfs('/')[2])")
        assert "rp2350-bg95 768" in out
    assert image.stat().st_size == 768 * 4096


def test_hal_uart_reads_what_arrived_without_allocating(mpy) -> None:
    """On the simulator's ptys hal's UART returns what has arrived (the unix port's own file read
    would wait for the full count), byte by byte under heap_lock."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        os.write(master, b"]C1RR473124829GB\r")
        out = mpy(f"""
            import os, micropython
            os.putenv("SIM_UART_SCANNER", {os.ttyname(slave)!r})
            from firmware import hal
            s = hal.open_uart("scanner")
            buf = bytearray(64)
            def take():
                micropython.heap_lock()
                try:
                    return s.readinto(buf)
                finally:
                    micropython.heap_unlock()
            first = s.read(1)  # poll's result tuple is made once, on the first ready fd
            n = take()
            print(first, n, bytes(buf[:n]), s.readinto(buf))
            """)
    finally:
        os.close(master)
        os.close(slave)
    assert out.strip() == "b']' 16 b'C1RR473124829GB\\r' None"
