"""`pip install` of the wheel gives a working depot, without the repository: the wheel is built,
installed into a fresh venv outside the repository (offline, from the wheelhouse `make setup`
fills), and from another folder the installed `depot` enrols a device, compiles and assigns a
route, flashes and syncs a virtual handheld that the installed `python -m sim device` runs (the
route goes out; after two stops' deliveries the records come home), and reports."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import firmware
from sim import day
from sim.client import Device
from sim.scenario import Carrier

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # `make setup`: the dependencies, pinned, as wheels
DEV = "HH-W001"

pytestmark = pytest.mark.slow


def run(venv: Path, *args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel and its dependencies."""
    assert WHEELHOUSE.is_dir(), f"no wheelhouse at {WHEELHOUSE}: run `make setup`"
    tmp = tmp_path_factory.mktemp("install")
    src, dist = tmp / "src", tmp / "dist"
    # built from a copy: setuptools leaves build/ beside the sources it builds
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "results", "typings", "__pycache__", ".*cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--find-links",
                    str(WHEELHOUSE), "-w", str(dist), str(src)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = dist.glob("postal_scanner-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-index", "--find-links", str(WHEELHOUSE), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return venv


def test_the_installed_depot_enrols_compiles_flashes_syncs_and_reports(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "north.geojson").write_bytes((ROOT / "examples" / "routes" / "north.geojson").read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(DEPOT_HOME=str(tmp_path / "depot"), PATH=f"{installed / 'bin'}:{env.get('PATH', '')}")
    code = "import firmware, host_tools, sim; print(firmware.__file__, host_tools.__file__, sim.__file__)"
    where = run(installed, "python", "-c", code, cwd=work, env=env).split()
    assert all(str(installed) in w for w in where) and not any(str(ROOT) in w for w in where)

    assert run(installed, "depot", "--version", cwd=work, env=env) == f"depot {firmware.__version__}\n"
    run(installed, "depot", "enrol", "--device-id", DEV, cwd=work, env=env)
    run(installed, "depot", "route", "compile", "north.geojson", "--out", "north.pkg", cwd=work, env=env)
    run(installed, "depot", "route", "assign", "north.pkg", "--device", DEV, cwd=work, env=env)
    proc = subprocess.Popen([str(installed / "bin" / "python"), "-m", "sim", "device", "--flash", "hh.img",
                             "--workdir", str(work / "run")], cwd=work, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with Device(proc, json.loads(proc.stdout.readline())) as dev:
        dev.wait_for(lambda s: True)  # the control socket answers
        out = run(installed, "depot", "flash", "--port", dev.console, "--device-id", DEV, cwd=work, env=env)
        assert "1 of 1 device(s) flashed" in out
        dev.wait_ready()
        out = run(installed, "depot", "sync", "--port", dev.dock, cwd=work, env=env)
        assert "route 100%" in out and "1/1 synced" in out  # the assigned route went over the dock
        walked = day.Outcome(DEV)
        route = json.loads((work / "north.geojson").read_text())
        day.Walker(dev, Carrier(DEV, "north.geojson", stops=2), route, walked).run()
        assert walked.errors == [] and len(walked.expected) >= 2
        out = run(installed, "depot", "sync", "--port", dev.dock, cwd=work, env=env)
        [row] = [line.split() for line in out.splitlines() if line.startswith(dev.dock)][-1:]
        received = len(walked.expected)
        assert row[1:6] == [DEV, "ok", str(received), str(received), "0"]  # received, stored, dupes
    cache = tmp_path / "depot" / "cache" / "flash" / "sim"
    assert {p.name.split(".")[0] for p in cache.glob("*.mpy")} >= {"__init__", "board_sim", "main", "record"}
    assert not list(installed.glob("lib/python*/site-packages/build"))  # nothing written to the install
    out = run(installed, "depot", "report", "--route", "NORTH-7", cwd=work, env=env)
    assert out.startswith("Route NORTH-7  (220 stops)")
    assert f"({received} deliveries, 0 attempts)" in out
    # route build's page template is package data
    run(installed, "python", "-m", "sim.address_town", "town", "--buildings", "30", cwd=work, env=env)
    out = run(installed, "depot", "route", "build", "town/addresses.csv", "--footprints",
              "town/buildings.geojson", "--out", "town.geojson", "--html", "town.html", cwd=work, env=env)
    assert out.splitlines()[-1].startswith("matched ") and "<svg" in (work / "town.html").read_text()
