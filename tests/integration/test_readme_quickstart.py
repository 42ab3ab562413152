"""The README's quickstart, run as a newcomer would type it: command by command, in bash,
in a fresh directory, with nothing added but a free port in place of 8080 and 9090
(other tests may hold those)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

from wahub.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def quickstart_script() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the quickstart is one bash block"
    return blocks[0]


def test_the_readme_quickstart_works_as_written(tmp_path: Path) -> None:
    script = quickstart_script()
    api_port, sandbox_port = free_port(), free_port()
    assert "8080" in script
    assert "9090" in script
    script = script.replace("8080", str(api_port)).replace("9090", str(sandbox_port))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    # A newcomer has set nothing; only the port moves, as the script's 8080 did.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    env["WAHUB_PORT"] = str(api_port)
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a failed step cannot leave the hub running
    )
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "Traceback" not in output
    accepted = json.loads((tmp_path / "message.json").read_text())
    assert accepted["status"] == "queued"
    # send --wait printed the CLI message's statuses up to a final one.
    assert re.search(r"^  (delivered|read)$", result.stdout, flags=re.M), output
    # The simulated reply opened a conversation with the person we wrote to.
    assert '"chat_id":"4915123456789@s.whatsapp.net"' in result.stdout.replace(" ", ""), output
