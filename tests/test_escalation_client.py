"""The cloud client against real HTTP servers on 127.0.0.1: deadline, retries, breaker, bad answers."""

from __future__ import annotations

import http.server
import threading
import time

import numpy as np
import pytest
from escalation_helpers import TOKEN, free_port, post, start_standin, wav_bytes

from edge_asr.cloud import CircuitBreaker, CloudClient, CloudError, parse_verbose_json

CLIP = np.zeros(16000, np.float32)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    s = start_standin(tmp_path_factory.mktemp("client"))
    yield s
    s.stop()


def test_transcribes_through_the_standin(standin):
    with CloudClient(standin.endpoint, TOKEN) as client:
        result = client.transcribe(CLIP, language="en")
        assert result.text == "stand in"
        assert result.segments[0]["avg_logprob"] == -0.1
        assert 0 < result.latency_s < 5
        assert client.request(CLIP, response_format="text") == "stand in\n"


def test_wrong_token_is_final_and_opens_the_breaker(standin):
    client = CloudClient(standin.endpoint, "nope", retries=3)
    with pytest.raises(CloudError) as e:
        client.transcribe(CLIP)
    assert e.value.reason == "http_401"
    assert client.breaker.state == "open"


def test_dead_cloud_costs_its_latency_once():
    client = CloudClient(f"http://127.0.0.1:{free_port()}/v1/audio/transcriptions", TOKEN, timeout_s=1.0)
    t0 = time.perf_counter()
    with pytest.raises(CloudError) as first:
        client.transcribe(CLIP)
    first_s = time.perf_counter() - t0
    assert first.value.reason == "refused"
    assert first_s <= 1.0 + 0.1
    later = []
    for _ in range(20):
        t0 = time.perf_counter()
        with pytest.raises(CloudError) as e:
            client.transcribe(CLIP)
        later.append(time.perf_counter() - t0)
        assert e.value.reason == "breaker_open"
    assert max(later) < 0.010


def test_slow_cloud_hits_the_deadline(tmp_path):
    slow = start_standin(tmp_path, delay=3.0)
    try:
        client = CloudClient(slow.endpoint, TOKEN, timeout_s=0.5)
        t0 = time.perf_counter()
        with pytest.raises(CloudError) as e:
            client.transcribe(CLIP)
        assert e.value.reason == "timeout"
        assert time.perf_counter() - t0 < 0.5 + 0.15
    finally:
        slow.stop()


def test_busy_cloud_is_retried_after_retry_after(tmp_path):
    busy = start_standin(tmp_path, delay=1.0, workers=1, queue=0)
    try:
        blocker = threading.Thread(target=post, args=(busy, {"file": ("a.wav", wav_bytes(CLIP))}))
        blocker.start()
        time.sleep(0.3)
        client = CloudClient(busy.endpoint, TOKEN, timeout_s=6.0, retries=3)
        t0 = time.perf_counter()
        assert client.transcribe(CLIP).text == "stand in"  # 503 first, then a retry once the slot is free
        assert time.perf_counter() - t0 >= 0.9
        blocker.join()
    finally:
        busy.stop()


class _Canned(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("body", [
    b"<html>not json</html>",
    b'{"segments": 3}',
    b'{"text": "hi", "segments": [1]}',
    b'{"text": "hi", "segments": [{"text": "hi", "start": "zero", "end": 1}]}',
])
def test_malformed_answers_are_errors(body):
    handler = type("Handler", (_Canned,), {"body": body})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = CloudClient(f"http://127.0.0.1:{httpd.server_address[1]}/v1/audio/transcriptions")
        with pytest.raises(CloudError) as e:
            client.transcribe(CLIP)
        assert e.value.reason == "malformed"
        assert client.breaker.state == "open"
    finally:
        httpd.shutdown()


def test_breaker_half_opens_after_cooldown():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10.0, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.allow()  # one failure is under the threshold
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one trial at a time
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_verbose_json_without_segments_is_fine():
    result = parse_verbose_json({"text": "hello"})
    assert result.text == "hello" and result.segments == []
