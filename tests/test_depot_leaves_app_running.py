"""After any depot command, success or failure, the handheld runs its application again: a refused
`depot flash`, a `depot sync` given the console port by mistake. Against a virtual handheld, with
the depot's own command line; the proof is the application's power-up `ready` beep."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools import cli
from host_tools import mpremote_adapter as mp
from host_tools.store import Store
from tests.test_flash import JOURNAL_TWO_RECORDS

client = pytest.importorskip("sim.client", reason="the simulator (sim/client.py) is not available")

pytestmark = pytest.mark.slow


def test_refused_flash_and_a_sync_on_the_console_leave_the_app_running(tmp_path: Path, capsys):
    store = tmp_path / "depot.sqlite3"
    with Store(store) as st:
        st.enrol("H-A")
    depot = ["--store", str(store)]
    with client.Device.start(tmp_path / "a.img") as dev:
        assert cli.main([*depot, "flash", "--port", dev.console, "--device-id", "H-A"]) == 0
        dev.wait_ready()
        since = len(dev.events())
        with mp.Device.connect(dev.console) as con:  # two records the depot has not collected
            assert con.exec(JOURNAL_TWO_RECORDS, "journal").split()[-1] == b"2"
        dev.wait_ready(since)  # letting go of the console restarts the app too
        capsys.readouterr()

        since = len(dev.events())
        assert cli.main([*depot, "flash", "--port", dev.console, "--device-id", "H-A"]) == 1
        assert "2 unsynced record(s) in the journal: run `depot sync` first" in capsys.readouterr().out
        dev.wait_ready(since)  # refused, and the carrier can scan again

        since = len(dev.events())
        assert cli.main([*depot, "sync", "--port", dev.console, "--no-route"]) == 2
        err = capsys.readouterr().err
        assert err == (f"depot: error: {dev.console}: {dev.console} is a handheld's USB console, not its "
                       "dock port. Give the dock port; the handheld was restarted and runs its app again.\n")
        dev.wait_ready(since)

        assert cli.main([*depot, "sync", "--port", dev.dock, "--no-route"]) == 0  # the sync it suggested
        with Store(store) as st:
            assert [r.item_id for r in st.records("H-A")] == ["RR473124829GB", "RR000000000GB"]
