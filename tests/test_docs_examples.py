"""The examples in README.md and docs/simulator.md, run as written (only the placeholders, such as
/dev/pts/N and the control socket's path, are replaced by the running device's). A change that
breaks what the docs tell a newcomer to type fails here."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import cli

client = pytest.importorskip("sim.client", reason="the simulator (sim/client.py) is not available")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ROUTE = ROOT / "examples" / "routes" / "north.geojson"


def blocks(doc: str, heading: str, lang: str) -> list[str]:
    """The fenced `lang` code blocks of the section under `heading` (up to the next heading)."""
    text = (ROOT / doc).read_text()
    section = text.split(heading, 1)[1]
    section = re.split(r"\n#{1,4} ", section, maxsplit=1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


@pytest.fixture
def day_img(tmp_path: Path, monkeypatch) -> Path:
    """docs/simulator.md's `day.img`: a handheld flashed by the depot with a route loaded."""
    store = str(tmp_path / "depot.sqlite3")
    image = tmp_path / "day.img"
    pkg = tmp_path / "north.pkg"
    assert cli.main(["--store", store, "enrol", "--device-id", "HH-0001"]) == 0
    assert cli.main(["route", "compile", str(ROUTE), "--out", str(pkg)]) == 0
    assert cli.main(["--store", store, "route", "assign", str(pkg), "--device", "HH-0001"]) == 0
    with client.Device.start(image) as dev:
        assert cli.main(["--store", store, "flash", "--port", dev.console, "--device-id", "HH-0001"]) == 0
        dev.wait_ready()
        assert cli.main(["--store", store, "sync", "--port", dev.dock]) == 0
    monkeypatch.chdir(tmp_path)
    return image


def test_simulator_python_examples(day_img: Path, capsys, monkeypatch):
    inject, power = blocks("docs/simulator.md", "## Inject a scan", "python")[0], \
        blocks("docs/simulator.md", "## Cut the power", "python")[0]
    (day_img.parent / "walk.nmea").write_text("$GPGGA,080000.00,4808.2200,N,01134.5000,E,1,08,0.9,520.0,M,"
                                              "47.0,M,,*5C\r\n")
    heard: list[str] = []
    stop = client.Device.stop

    def stop_once_both_scans_beeped(dev, *args, **kw):  # the example ends before the device answers
        dev.wait_for(lambda s: sum(e["kind"] == "buzzer" for e in dev.events()) >= 3)
        heard.extend(e["value"] for e in dev.events() if e["kind"] == "buzzer")
        stop(dev, *args, **kw)

    monkeypatch.setattr(client.Device, "stop", stop_once_both_scans_beeped)
    capsys.readouterr()
    exec(compile(inject, "docs/simulator.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert ast.literal_eval(printed)[0]["kind"] in ("buzzer", "led", "power")  # the events, as shown
    monkeypatch.undo()
    buzzer = heard
    assert buzzer[0] == "ready"
    # The S10 code is read as Code 128 (]C0): a valid item, refused only because it is not on the
    # route and there is no fix yet. With the old ]C1 default it beeped "invalid".
    assert buzzer[1] == "error"

    with client.Device.start(day_img) as dev:
        dev.wait_running()
        exec(compile(power, "docs/simulator.md", "exec"), {"dev": dev})  # noqa: S102
        dev.wait_running()
        assert dev.wear()["blocks"] > 0


def test_simulator_shell_examples(day_img: Path):
    with client.Device.start(day_img) as dev:
        dev.wait_ready()
        control = dev.info["control"]
        shell = blocks("docs/simulator.md", "From a shell", "sh")[0]
        shell = shell.replace("/tmp/simdev-x1/control.sock", control)
        got = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert ast.literal_eval(got.stdout.strip()) == {"ok": True, "sent": "RR473124829GB"}

        shot = blocks("docs/simulator.md", "## Take a screenshot", "sh")[0]
        shot = shot.replace("/tmp/simdev-x1/control.sock", control).replace(
            "--out screen.png", f"--out {day_img.parent / 'screen.png'}")
        got = subprocess.run(["bash", "-c", shot], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert (day_img.parent / "screen.png").read_bytes()[:4] == b"\x89PNG"


def test_readme_simulator_commands(tmp_path: Path):
    """README "The simulator": start a device, enrol, flash it, list its /lib, take a screenshot,
    in a shell whose PATH starts with the venv (as the README tells)."""
    block = blocks("README.md", "### The simulator", "sh")[0]
    lines = [ln.split("  #")[0].strip() for ln in block.splitlines()]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", DEPOT_HOME=str(tmp_path / "depot"))
    start, enrol, flash, ls, shot, run = lines
    assert start.endswith("&") and run.startswith("python -m sim run")  # the day: tests/test_day.py
    proc = subprocess.Popen(shlex.split(start.rstrip("& ")), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        client.Device.attach(info["control"]).wait_for(lambda s: s["state"] == "I")
        for cmd in (enrol, flash, ls, shot):
            cmd = cmd.replace("/dev/pts/N", info["console"]).replace("/tmp/…/control.sock", info["control"])
            got = subprocess.run(shlex.split(cmd), cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=120)
            assert got.returncode == 0, f"{cmd}\n{got.stdout}\n{got.stderr}"
            if cmd.startswith("mpremote"):
                assert "record.mpy" in got.stdout  # the firmware the flash installed
        assert (tmp_path / "screen.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        proc.terminate()
        proc.wait(30)
