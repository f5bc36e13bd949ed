"""`crisislens triage --engine ray --address`: against a head node this test starts itself with
`ray start --head --block` on 127.0.0.1 and stops afterwards (SIGTERM to the `ray start` it
launched, which stops the processes it started; whatever is left of that process group is
killed). Token authentication is off for this local head and its client only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the cluster extra is not installed: pip install 'crisislens[cluster]'")
pq = pytest.importorskip("pyarrow.parquet", reason="the cluster extra is not installed")

RAY = Path(sys.executable).parent / "ray"
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_alive(pgid: int) -> list[str]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return out.stdout.split()


@pytest.fixture
def head_node(tmp_path):
    if not RAY.is_file():
        pytest.skip(f"{RAY}: no `ray` command beside this Python")
    port = _free_port()
    log = (tmp_path / "head.log").open("w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         f"--object-store-memory={200 * 1024 * 1024}", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ENV,
    )
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in (tmp_path / "head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up: {(tmp_path / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(10)  # it drains the node first; past that, the group is killed below
        except subprocess.TimeoutExpired:
            pass
        if _group_alive(head.pid):  # only this group's processes: the head this test started
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        log.close()
    deadline = time.monotonic() + 20
    while _group_alive(head.pid) and time.monotonic() < deadline:  # orphans are reaped by init
        time.sleep(0.5)
    assert not _group_alive(head.pid)


def test_triage_joins_a_head_node_with_address_and_writes_the_shards(head_node, tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"h{i}", "text": f"bridge {i} closed, boats needed"}) + "\n"
                             for i in range(40)))
    shards = tmp_path / "shards"
    run = subprocess.run(
        [sys.executable, "-m", "crisislens.runtime", "triage", str(posts), "--engine", "ray", "--address", head_node,
         "--parquet", str(shards), "--workers", "2", "--shard-size", "25", "--quiet"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("40 predicted") and "2 shard(s) written" in run.stdout
    table = pq.read_table(shards / "predictions")
    assert sorted(table["post_id"].to_pylist()) == sorted(f"h{i}" for i in range(40))
    log = json.loads((shards / "runs.jsonl").read_text().splitlines()[-1])
    assert log["address"] == head_node and log["actors"] == 2
