"""The app's tasks run side by side without asyncio.gather (main.start): a task that raises still
ends the app with its exception, as it did under gather, so main() leaves asyncio.run and a board
resets instead of carrying on with a dead GNSS, scanner or dock stream. On the real VM."""

from __future__ import annotations

from pathlib import Path


def test_a_task_that_raises_ends_the_app_with_its_exception(mpy, tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.write_bytes(b"")
    out = mpy(f"""
import asyncio, os
os.putenv("SIM_EVENTS", {str(events)!r})
from firmware import main

ticks = []

async def steady():
    while True:
        ticks.append(1)
        await asyncio.sleep_ms(5)

async def broken():
    await asyncio.sleep_ms(30)
    raise OSError(5)

class App:
    def tasks(self):
        return [steady(), broken()]

async def run():
    await main.start(App())
    while True:
        await asyncio.sleep_ms(60000)

try:
    asyncio.run(run())
    print("kept running")
except OSError as e:
    print("ended", e.args[0], len(ticks) > 1)
""")
    assert out.split() == ["ended", "5", "True"]
    assert events.read_text() == "buzzer ready\n"  # every task had started before the ready beep
