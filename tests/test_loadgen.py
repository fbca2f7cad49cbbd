"""``meshpipe load``: percentiles and the split by answering version, against a stub on 127.0.0.1."""

from __future__ import annotations

import json
import threading

import pytest

from meshpipe.cli import main
from meshpipe.loadgen import Sample, percentile, summarize
from support.http_server import QuietHandler, serving


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0 and percentile([], 0.5) is None


def test_the_report_splits_answers_by_version() -> None:
    samples = ([Sample(2.0, 200, "aaaaaaaa")] * 80 + [Sample(5.0, 500, "bbbbbbbb")] * 5
               + [Sample(4.0, 200, "bbbbbbbb")] * 15 + [Sample(10_000.0, 0, "", "no answer within 10 s")] * 2)
    report = summarize(samples, "http://127.0.0.1:1/", 100.0, 1.02, 102, 1.02)
    assert (report.sent, report.answered, report.statuses) == (102, 100, {"200": 95, "500": 5})
    assert report.failures == {"no answer within 10 s": 2}
    a, b = report.versions["aaaaaaaa"], report.versions["bbbbbbbb"]
    assert (a.requests, a.share, a.errors) == (80, 80.0, 0) and (b.requests, b.share, b.errors) == (20, 20.0, 5)
    assert report.latency_ms["p50"] == 2.0 and report.latency_ms["max"] == 5.0


class Versions(QuietHandler):
    """Answers like a pair of sidecars: every fourth request from the new version."""

    count = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            type(self).count += 1
            n = type(self).count
        canary = self.headers.get("x-canary") == "always"
        self.send_response(200)
        self.send_header("x-meshpipe-version", "4e34e300" if canary or n % 4 == 0 else "01d01d00")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_load_prints_percentiles_and_the_observed_split(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(Versions) as port:
        assert main(["load", f"http://127.0.0.1:{port}/data", "--rps", "200", "--duration", "1",
                     "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["sent"] == 200 and report["statuses"] == {"200": 200}
        assert report["versions"]["4e34e300"]["requests"] == 50 and report["versions"]["01d01d00"]["share"] == 75.0
        assert report["latency_ms"]["p99"] is not None
        assert main(["load", f"http://127.0.0.1:{port}/data", "--rps", "100", "--duration", "0.5",
                     "--header", "x-canary=always"]) == 0
        text = capsys.readouterr().out
        assert "4e34e300" in text and "100.0 %" in text and "latency ms: p50" in text


@pytest.mark.parametrize(("args", "words"), [
    (["ftp://h/"], "not an http:// or https:// URL"),
    (["http://127.0.0.1:1/", "--rps", "0"], "--rps 0"),
    (["http://127.0.0.1:1/", "--duration", "-1"], "--duration -1"),
    (["http://127.0.0.1:1/", "--header", "x-canary"], "NAME=VALUE"),
])
def test_bad_load_arguments_exit_2(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", *args]) == 2
    assert words in capsys.readouterr().err
