"""An app's output is stamped with the time it was captured, by a stamper that outlives the daemon; and
``meshpipe logs`` places the app's lines by that time, among its sidecar's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meshpipe.engines.local.observe.logs import interleave, line_time, read_line
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.engines.local.tasks import stamp
from meshpipe.engines.local.tasks.spawn import OsSpawner
from support.dataplane import request, wait_until
from test_local_engine_e2e import ENV, LocalEnv, make_env  # noqa: F401 (make_env is a fixture)

AT = 1748772000.25  # 2025-06-01T10:00:00.250Z


def test_stamper_stamps_each_line_of_each_stream_with_the_capture_time() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sink_r, sink_w = os.pipe()

    def app() -> None:  # more than a pipe holds: written while the stamper reads
        os.write(out_w, b"first\nsecond\nunfinished")
        os.write(err_w, b"oops\n" + b"x" * (stamp.MAX_LINE + 5))
        os.close(out_w)
        os.close(err_w)

    def stamper() -> None:
        stamp.run({out_r: b"out", err_r: b"err"}, sink_w, clock=lambda: AT)
        os.close(sink_w)

    threads = [threading.Thread(target=app), threading.Thread(target=stamper)]
    for thread in threads:
        thread.start()
    written = b""
    while chunk := os.read(sink_r, 1 << 20):
        written += chunk
    for thread in threads:
        thread.join(10)
    for fd in (out_r, err_r, sink_r):
        os.close(fd)
    lines = written.decode().splitlines()
    assert sorted(line for line in lines if " out " in line[:30]) == [
        "2025-06-01T10:00:00.250Z out first", "2025-06-01T10:00:00.250Z out second",
        "2025-06-01T10:00:00.250Z out unfinished"]  # the last line goes too, when its pipe closes
    errs = [line for line in lines if " err " in line[:30]]
    assert errs[0] == "2025-06-01T10:00:00.250Z err oops"
    assert [len(stamp.parse(line)[2]) for line in errs[1:]] == [stamp.MAX_LINE, 5]  # type: ignore[index]


def test_parse_reads_a_stamp_back_and_nothing_else() -> None:
    assert stamp.parse("2025-06-01T10:00:00.250Z err boom") == ("2025-06-01T10:00:00.250Z", "err", "boom")
    assert stamp.parse("2025-06-01T10:00:00.250Z out ") == ("2025-06-01T10:00:00.250Z", "out", "")
    assert stamp.parse(stamp.prefix(AT, b"out").decode() + "x") == ("2025-06-01T10:00:00.250Z", "out", "x")
    for other in ("2025-06-01T10:00:00.250Z INFO started", "2025-06-01 10:00:00.250Z out x",
                  "hello-web listening on http://127.0.0.1:1234", "2025-06-01T10:00:00Z out x", ""):
        assert stamp.parse(other) is None, other


def test_logs_place_stamped_lines_by_capture_time_and_untimed_lines_after_their_predecessor(
        tmp_path: Path) -> None:
    app, envoy = tmp_path / "t-1-app.log", tmp_path / "t-1-envoy.log"
    app.write_text("2025-06-01T10:00:01.000Z out listening\n"
                   "untimed, as written before stamping\n"  # the negative control: no capture time of its own
                   "2025-06-01T10:00:03.000Z err 2020-01-01T00:00:00Z the app's own (wrong) clock\n")
    envoy.write_text("2025-06-01T10:00:00.500Z meshpipe sidecar LIVE\n"
                     '{"start_time": "2025-06-01T10:00:02.000Z", "path": "/x"}\n')
    lines = interleave([("t-1 app", app), ("t-1 envoy", envoy)])
    assert [(line.at - 1748772000, line.source, line.text) for line in lines] == [
        (0.5, "t-1 envoy", "2025-06-01T10:00:00.500Z meshpipe sidecar LIVE"),
        (1.0, "t-1 app", "listening"),
        (1.0, "t-1 app", "untimed, as written before stamping"),
        (2.0, "t-1 envoy", '{"start_time": "2025-06-01T10:00:02.000Z", "path": "/x"}'),
        (3.0, "t-1 app", "2020-01-01T00:00:00Z the app's own (wrong) clock")]
    # A log from before stamping: its untimed lines carry no time at all.
    assert read_line("t-1 app", "listening") == (None, "t-1 app", "listening")


APP = """
import sys, time
print("started", flush=True)
print("to stderr", file=sys.stderr, flush=True)
n = 0
while True:
    time.sleep(0.05)
    n += 1
    print(f"tick {n}", flush=True)
"""

DAEMON = """
import asyncio, sys, time
from pathlib import Path
from meshpipe.engines.local.tasks.spawn import OsSpawner

async def main():
    proc = await OsSpawner().spawn([sys.executable, "-c", sys.argv[2]], {}, Path(sys.argv[1]), stamp=True)
    print(proc.pid, proc._stamper.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _stamped_times(log: Path) -> list[float]:
    found = [stamp.parse(line) for line in log.read_text().splitlines()]
    return [line_time(f[0]) for f in found if f is not None]  # type: ignore[misc]


def test_stamping_goes_on_after_the_daemon_that_started_the_app_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "t-app.log"
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON, str(log), APP], stdout=subprocess.PIPE, text=True)
    started: list[tuple[int, str | None]] = []
    try:
        app_pid, stamper_pid = (int(x) for x in daemon.stdout.readline().split())  # type: ignore[union-attr]
        started = [(app_pid, procs.start_time(app_pid)), (stamper_pid, None)]
        wait_until(lambda: "tick 2" in log.read_text(), "the app's lines reach the log", timeout=10)
        daemon.kill()
        daemon.wait(10)
        killed = time.time()
        # The app and its stamper live on, and lines written after the kill are stamped with their time.
        wait_until(lambda: any(at > killed + 0.2 for at in _stamped_times(log)), "lines stamped after the kill",
                   timeout=10)
        assert procs.is_running(app_pid) and procs.is_running(stamper_pid)
        text = log.read_text()
        assert "err to stderr" in text and "out started" in text
        times = _stamped_times(log)
        assert times == sorted(times) and len(times) == len(text.splitlines())
        # The app's end closes the pipes: the stamper ends by itself.
        os.killpg(app_pid, signal.SIGKILL)
        wait_until(lambda: not procs.is_running(stamper_pid), "the stamper ends with the app", timeout=10)
    finally:
        daemon.kill()
        daemon.wait(10)
        procs.kill_all([(pid, None) for pid, _ in started if procs.is_running(pid)], timeout=2)


def test_a_stamped_app_keeps_its_own_pid_and_exit_status_and_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "t-app.log"

    async def run() -> tuple[int, int, int | None]:
        proc = await OsSpawner().spawn(
            [sys.executable, "-c", "import os, sys; print(os.getpid()); print('bye', end=''); sys.exit(3)"],
            {}, log, stamp=True)
        code = await proc.wait()
        return proc.pid, code, proc._stamper.returncode  # type: ignore[union-attr]

    pid, code, stamper_code = asyncio.run(run())
    lines = [stamp.parse(line) for line in log.read_text().splitlines()]
    assert code == 3 and stamper_code == 0  # the exit is the app's; its last words are written by then
    assert [(f[1], f[2]) for f in lines if f] == [("out", str(pid)), ("out", "bye")]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_logs_show_an_apps_line_at_its_capture_time_in_order_with_its_sidecars(make_env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    engine_env: LocalEnv = make_env(tasks=1, access_log=True)
    before_deploy = time.time()
    version = engine_env.serve_backend()
    task = f"hello-backend-{version}-1"
    for i in range(3):
        assert request(engine_env.ingress_port, f"/backend/data?n={i}").status == 200
    # The daemon is killed: the app and its stamper outlive it.
    daemon = read_daemon_file(engine_env.paths.daemon_json)
    assert daemon is not None
    os.kill(daemon["pid"], signal.SIGKILL)
    wait_until(lambda: not procs.is_running(daemon["pid"]), "the daemon is gone", timeout=30)
    before_stop = time.time()
    (app_pid, app_task), = engine_env.processes("app")
    os.kill(app_pid, signal.SIGTERM)  # the app says it is stopping; the daemon, back, starts it again

    def stopping() -> list:  # type: ignore[type-arg]
        return [line for line in engine_env.engine.logs(ENV, "hello-backend") if "stopping" in line.text]

    wait_until(lambda: stopping(), "the app's last line reaches its log", timeout=30)
    after_stop = time.time()
    engine_env.engine.status(ENV)  # any command brings the daemon back; it replaces the app that ended
    wait_until(lambda: any(p != app_pid and t == app_task for p, t in engine_env.processes("app")),
               "the app replaced", timeout=30)
    engine_env.note_pids()
    lines = engine_env.engine.logs(ENV, "hello-backend")
    app = [line for line in lines if line.source == f"{task} app"]
    listening = next(line for line in app if "listening on" in line.text)
    assert before_deploy <= listening.at <= before_stop
    assert before_stop <= stopping()[0].at <= after_stop
    # The order shown: the sidecar's start, the app's start, the requests the sidecar logged, the app's stop.
    # (Without the stamps, the app's lines carry no time: they would all be shown first, at 0.)
    order = [line.text for line in lines]
    live = next(i for i, text in enumerate(order) if "meshpipe sidecar" in text and "LIVE" in text)
    access = [i for i, line in enumerate(lines) if line.source == f"{task} envoy" and line.text.startswith("{")
              and json.loads(line.text)["path"].startswith("/data?n=")]
    assert live < order.index(listening.text) < access[0] and access[-1] < order.index(stopping()[0].text)
    assert [line.at for line in lines] == sorted(line.at for line in lines)
