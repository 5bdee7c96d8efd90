"""`caviar run` on a terminal: a live display (counts, the best so far, each running trial's
epoch, the ETA) under the finished trials' lines, checked through a pseudo-terminal."""

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from tests.conftest import CAVIAR

pytestmark = pytest.mark.integration


def run_in_terminal(args: list[str], cwd, env: dict, timeout_s: float = 300) -> tuple[int, str]:
    """Run `caviar ARGS` with a pseudo-terminal as its stdout and stderr; its exit status and
    everything it wrote there."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [*CAVIAR, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
    finally:
        os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


SLOW = """
import time
import caviar

def train(config):
    for epoch in range(1, config["max_epochs"] + 1):
        time.sleep(0.6)  # longer than the display's redraw interval: it shows each epoch
        caviar.report({"epoch": epoch, "val_acc": 0.5 + 0.1 * epoch * config["x"]})
"""


def test_a_terminal_gets_a_live_display(write_spec, tmp_path, private_ray_tmp):
    (tmp_path / "slow.py").write_text(SLOW)
    path = write_spec(
        {
            "train": {"function": "slow:train", "max_epochs": 3},
            "space": {"x": {"uniform": [0, 1]}},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 3},
        }
    )
    env = {**os.environ, "TERM": "xterm"}
    rc, out = run_in_terminal(
        ["run", str(path), "--storage", str(tmp_path / "runs"), "--name", "r"], tmp_path, env
    )
    assert rc == 0, out[-3000:]
    # Redrawn in place: the cursor goes back up over the display's lines.
    assert re.search(r"\x1b\[\d*A", out), out[-3000:]
    assert re.search(r"caviar: \d/3 done, \d running, 0 stopped early, best val_acc ", out)
    assert re.search(r"running [0-9a-f]{8}  epoch [123]/3  val_acc 0\.\d+", out), out[-3000:]
    assert re.search(r"ETA \d+s", out)  # once a trial has ended
    # The finished trials' lines and the leaderboard print as without a terminal.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).replace("\r\n", "\n")
    finished = [ln for ln in text.splitlines() if re.match(r"\[\d/3 ", ln)]
    assert len(finished) == 3 and all(" completed at epoch 3: val_acc=" in ln for ln in finished)
    assert "3 trials: 3 completed" in text
    assert text.strip().splitlines()[-1] == str(tmp_path / "runs" / "r")
