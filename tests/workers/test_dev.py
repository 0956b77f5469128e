"""`autoglm dev` starts a child that died again, after a back-off, with one line saying so."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from workers.dev import Child


def test_a_dead_child_is_started_again_after_a_back_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = Child("broken", ["no-such-command"], dict(os.environ), str(tmp_path))
    first = child.start()
    first.wait(60)
    assert child.watch() is first  # within the back-off: not yet
    line = capsys.readouterr().out.strip()
    assert line.startswith("broken exited with status 2; restarting in 1 s")
    assert child.watch() is first
    assert capsys.readouterr().out == ""  # one line per death
    time.sleep(1.1)
    second = child.watch()
    assert second is not first
    second.wait(60)
    child.watch()
    assert "restarting in 2 s" in capsys.readouterr().out  # the back-off doubles
    assert (tmp_path / "broken.log").read_text().count("invalid choice") == 2
