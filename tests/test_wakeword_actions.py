"""Actions run for real: programs via argv (never a shell) and JSON POSTs to a local HTTP server."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wakeword.actions import ActionError, CommandContext, PostAction, RunAction, fill, placeholders

CONTEXT = CommandContext("lights", "turn on the kitchen lights", {"state": "on", "room": "kitchen"})
WRITE_ARGS_AND_ENV = ("import json, os, sys; json.dump({'argv': sys.argv[1:], 'state': os.environ['STATE'], "
                      "'slot': os.environ['EDGE_ASR_SLOT_ROOM']}, open(sys.argv[1], 'w'))")


@pytest.fixture()
def http_server():
    """A real HTTP server on 127.0.0.1 that records JSON bodies; path /fail answers 500."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body), self.headers.get("X-Token")))
            self.send_response(500 if self.path == "/fail" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_run_passes_slots_as_arguments_and_environment(tmp_path):
    out = tmp_path / "out.json"
    action = RunAction([sys.executable, "-c", WRITE_ARGS_AND_ENV, str(out), "{room}", "lights {state}"],
                       {"STATE": "{state}"})
    action(CONTEXT)
    assert json.loads(out.read_text()) == {"argv": [str(out), "kitchen", "lights on"], "state": "on",
                                           "slot": "kitchen"}


def test_run_never_goes_through_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "out.json"
    evil = CommandContext("lights", "x", {"state": f"; touch {marker}", "room": f"$(touch {marker})"})
    RunAction([sys.executable, "-c", WRITE_ARGS_AND_ENV, str(out), "{room}"], {"STATE": "{state}"})(evil)
    assert not marker.exists()
    assert json.loads(out.read_text())["argv"][1] == f"$(touch {marker})"


def test_run_failures_are_reported(tmp_path):
    with pytest.raises(ActionError, match="exited with status 3: boom"):
        RunAction([sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"], {})(CONTEXT)
    with pytest.raises(ActionError, match="program not found"):
        RunAction([str(tmp_path / "no-such-program")], {})(CONTEXT)
    with pytest.raises(ActionError, match="did not finish"):
        RunAction([sys.executable, "-c", "import time; time.sleep(5)"], {}, timeout_s=0.3)(CONTEXT)


def test_post_sends_json_with_typed_slots(http_server):
    url, received = http_server
    timer = CommandContext("timer", "set a timer for 5 minutes", {"minutes": 5})
    PostAction(url + "/timer", {"minutes": "{minutes}", "say": "timer for {minutes} minutes"},
               {"X-Token": "secret"})(timer)
    PostAction(url + "/default")(timer)
    assert received == [
        ("/timer", {"minutes": 5, "say": "timer for 5 minutes"}, "secret"),
        ("/default", {"command": "timer", "text": timer.text, "slots": {"minutes": 5}}, None),
    ]


def test_post_failures_are_reported(http_server):
    url, _ = http_server
    with pytest.raises(ActionError, match="HTTP 500"):
        PostAction(url + "/fail")(CONTEXT)
    with pytest.raises(ActionError, match="failed"):
        PostAction("http://127.0.0.1:9/unreachable", timeout_s=2)(CONTEXT)


def test_templates():
    assert placeholders({"a": ["{x}", "y {z}"], "b": 3}) == {"x", "z"}
    assert fill(["{x}", "{x}!", {"k": "{x}"}], {"x": 7}) == [7, "7!", {"k": 7}]
    assert fill("{x}", {"x": "{y}"}) == "{y}"  # values are data, never expanded again
