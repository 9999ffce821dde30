"""The second stage on the cloud: the real `edge-asr serve` (default model) on 127.0.0.1 must hear the wake
phrase; when the cloud cannot answer, the local transcriber decides."""

from escalation_helpers import TOKEN, free_port
from wakeword_helpers import clips, edge_asr

from edge_asr.audio import load_audio
from edge_asr.cloud import CloudClient
from wakeword.verify import CloudVerifier, TranscriptVerifier, local_transcriber


class Counting:
    """A verifier that records whether it was asked (the fallback must only be used when the cloud fails)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def verify(self, audio):
        self.calls += 1
        return self.inner.verify(audio)


def test_cloud_hears_the_wake_phrase(cloud, transcriber):
    fallback = Counting(TranscriptVerifier(local_transcriber(transcriber), ["alexa"]))
    # A generous deadline: this shared test machine can be slow; the fallback must not be what answers.
    verifier = CloudVerifier(CloudClient(cloud.endpoint, TOKEN, timeout_s=60), ["alexa"], fallback)
    assert verifier.verify(load_audio(clips("alexa")[0]))
    assert not verifier.verify(load_audio(clips("jarvis")[0]))
    assert fallback.calls == 0


def test_local_check_stands_in_when_the_cloud_is_down(transcriber):
    fallback = Counting(TranscriptVerifier(local_transcriber(transcriber), ["alexa"]))
    dead = CloudClient(f"http://127.0.0.1:{free_port()}/v1/audio/transcriptions", TOKEN, retries=0)
    verifier = CloudVerifier(dead, ["alexa"], fallback)
    assert verifier.verify(load_audio(clips("alexa")[0])) and fallback.calls == 1


def test_cloud_verifier_needs_an_endpoint(tmp_path):
    config = tmp_path / "commands.yaml"
    config.write_text("listen:\n  verifier: cloud\n")
    done = edge_asr("listen", "--config", config, "--input", "-", stdin=b"")
    assert done.returncode == 2 and "'escalation.endpoint' is not set" in done.stderr.decode()
