"""Transcription on the real default model and real recordings."""

import json
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import soundfile as sf
from conftest import REPO, SAMPLE, SPEECH_DEV, wer

from edge_asr.audio import load_audio


def test_speech_dev_wer(transcriber, utterances):
    subset = [u for u in utterances if u.duration <= 30][::4]  # every 4th: all subsets, ~20 files
    hyps = ["".join(s.text for s in transcriber.transcribe(u.path)[0]) for u in subset]
    score = wer([u.reference for u in subset], hyps)
    # tiny.en scores ~12 % on the whole set through faster-whisper; a broken decoder scores far worse.
    assert score < 0.20, score


def test_segments_carry_everything(transcriber):
    segments, info = transcriber.transcribe(SPEECH_DEV / "jfk_inaugural_1961.wav")
    segments = list(segments)
    assert info.language == "en" and abs(info.duration - 11.0) < 0.1
    text = " ".join(s.text for s in segments).lower()
    assert "ask not what your country can do for you" in text
    for s in segments:
        assert 0 <= s.start < s.end <= info.duration + 0.5
        assert s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1 and s.compression_ratio > 0
        assert s.tokens and s.words
        assert all(0 < w.probability <= 1 for w in s.words)
        assert all(a.start <= b.start for a, b in zip(s.words, s.words[1:]))
        assert s.start <= s.words[0].start and s.words[-1].end <= s.end + 0.01
    country = [w for s in segments for w in s.words if "country" in w.word]
    assert country and 4.0 < country[0].start < 7.5  # "...your country" is said around 5-6 s


def test_array_input_matches_file(transcriber):
    path = SPEECH_DEV / "ljspeech_LJ001-0001.wav"
    from_file = [s.text for s in transcriber.transcribe(path)[0]]
    from_array = [s.text for s in transcriber.transcribe(load_audio(path))[0]]
    assert from_file == from_array and "printing" in from_file[0].lower()


def test_beam_search(transcriber):
    path = SPEECH_DEV / "ljspeech_LJ001-0001.wav"
    text = "".join(s.text for s in transcriber.transcribe(path, beam_size=5)[0])
    assert wer(["printing in the only sense with which we are at present concerned differs from most if not "
                "from all the arts and crafts represented in the exhibition"], [text]) < 0.1


def test_silence_and_one_sample_give_no_words(transcriber):
    assert list(transcriber.transcribe(np.zeros(16000 * 5, dtype=np.float32))[0]) == []
    assert list(transcriber.transcribe(np.zeros(1, dtype=np.float32))[0]) == []


def _peak_bytes(transcriber, path) -> tuple[int, list]:
    tracemalloc.start()
    segments = list(transcriber.transcribe(path, word_timestamps=False)[0])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, segments


def test_long_audio_windows_and_flat_memory(transcriber, utterances, tmp_path):
    clips = [load_audio(u.path) for u in utterances if u.subset == "ljspeech"][:12]
    sf.write(tmp_path / "long.wav", np.concatenate(clips), 16000)  # ~100 s: windows with seeking between
    sf.write(tmp_path / "short.wav", np.concatenate(clips[:4]), 16000)  # ~35 s
    del clips
    long_peak, segments = _peak_bytes(transcriber, tmp_path / "long.wav")
    starts = [s.start for s in segments]
    assert starts == sorted(starts) and segments[-1].end > 80
    assert len({s.seek for s in segments}) >= 3
    short_peak, _ = _peak_bytes(transcriber, tmp_path / "short.wav")
    assert long_peak < short_peak + 4e6  # streamed: three times the audio, the same memory


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edge_asr.cli", *map(str, args)], capture_output=True,
                          text=True, **kw)


def test_cli_prints_transcript_of_bundled_sample():
    r = run_cli("transcribe", SAMPLE)
    assert r.returncode == 0, r.stderr
    assert "recognized offline" in r.stdout.lower()


def test_cli_formats_and_batch_with_a_bad_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"garbage" * 100)
    out = tmp_path / "out"
    r = run_cli("transcribe", SAMPLE, bad, SPEECH_DEV / "jfk_inaugural_1961.wav", "--format", "json",
                "--output-dir", out)
    assert r.returncode == 2
    assert "broken.wav: not a readable audio file" in r.stderr and "Traceback" not in r.stderr
    data = json.loads((out / "jfk_inaugural_1961.json").read_text())
    assert set(data) == {"text", "segments", "language", "duration"}
    assert "country" in data["text"] and data["segments"][0]["words"]
    assert (out / "hello.json").exists() and not (out / "broken.json").exists()
    srt = run_cli("transcribe", SAMPLE, "--format", "srt").stdout
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = run_cli("transcribe", SAMPLE, "--format", "vtt").stdout
    assert vtt.startswith("WEBVTT\n\n00:00:0")


def test_cli_python_api_agree(transcriber):
    r = run_cli("transcribe", SPEECH_DEV / "jfk_inaugural_1961.wav")
    api = [s.text.strip() for s in transcriber.transcribe(SPEECH_DEV / "jfk_inaugural_1961.wav")[0]]
    assert r.stdout.strip().splitlines() == api


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for args in [("transcribe", tmp_path / "missing.wav"), ("transcribe", empty),
                 ("transcribe", SAMPLE, "--model", tmp_path)]:
        r = run_cli(*args)
        assert r.returncode == 2, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edge-asr: error: "), r.stderr


def test_an_incomplete_model_dir_is_named(tmp_path, model_dir):
    """A file its card lists is missing (here the int8 embedding rows): one line naming it, not ORT's error."""
    import shutil

    from edge_asr.model_dir import TOKEN_ROWS

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / TOKEN_ROWS).unlink()
    r = run_cli("transcribe", SAMPLE, "--model", broken)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"edge-asr: error: {broken}: incomplete model directory (missing {TOKEN_ROWS}, listed in its model.yaml)"]


def test_every_verb_has_help():
    from edge_asr.cli import VERBS

    for verb in VERBS:
        r = run_cli(verb, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout, verb


def _nonspeech_clip(clip_id: str) -> np.ndarray:
    """One of the escalation benchmark's synthesized non-speech clips (sox, deterministic)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import escalation_data

    index = int(clip_id.split("-")[1])
    clip = escalation_data.nonspeech_clips(index + 1)[index]
    assert clip.id == clip_id
    return clip.audio


def test_no_words_over_a_melody_where_whisper_hallucinates(transcriber):
    # tiny.en says " Thank you." over these plucked notes with its no-speech token at 0.88 but a text likely
    # enough (avg_logprob -0.9) to override it; Silero VAD, asked only in that case, hears no speech.
    melody = _nonspeech_clip("nonspeech-05-melody")
    texts = ["".join(s.text for s in transcriber.transcribe(melody, vad_check=check)[0]) for check in (False, True)]
    assert "thank" in texts[0].lower()  # the hallucination this guards against is still there without it
    assert not re.search(r"\w", texts[1]), texts[1]


def test_speech_kept_where_the_no_speech_token_is_high():
    # With tiny.en fp32 this utterance's second window holds only its last 2.5 s; after the first window's text
    # as prompt, the no-speech probability there is 0.8 but the words are right, and the VAD hears speech: they
    # stand. (The int8 default cuts its first window elsewhere, so fp32 is named here.)
    from edge_asr import Transcriber
    from edge_asr.models import resolve_model

    transcriber = Transcriber(resolve_model("tiny.en"), threads=2)
    segments = list(transcriber.transcribe(SPEECH_DEV / "ls-test-other_3080-5032-0009.wav")[0])
    assert len({s.seek for s in segments}) == 2 and max(s.no_speech_prob for s in segments) > 0.6
    assert "does not visit often" in "".join(s.text for s in segments).lower()


def test_a_loop_needs_fallback_even_where_no_speech_is_likely():
    from edge_asr.decoding import DecodingResult, compression_ratio
    from edge_asr.transcriber import TranscribeOptions, _needs_fallback

    def result(text: str, avg_logprob: float, no_speech_prob: float) -> DecodingResult:
        return DecodingResult(tokens=[], text=text, avg_logprob=avg_logprob, sum_logprob=0.0,
                              no_speech_prob=no_speech_prob, temperature=0.0,
                              compression_ratio=compression_ratio(text))

    opts = TranscribeOptions()
    # base, beam 5, on the short last window of a noisy utterance (cached from the escalation benchmark)
    assert _needs_fallback(result(" and cry to the unit" * 12, -0.19, 0.93), opts)
    assert not _needs_fallback(result(" the country that he does not visit often.", -0.31, 0.82), opts)


def test_base_beam_gives_no_words_on_a_tone():
    # Whisper base with beam 5 (the server's default model) loops " I'm sorry, I'm sorry, ..." on this tone at
    # temperature 0, with the no-speech token at 0.71: a loop must not pass as speech.
    from edge_asr import Transcriber
    from edge_asr.models import resolve_model

    base = resolve_model("base")  # built into the cache on first use, like a user's

    tone = _nonspeech_clip("nonspeech-03-tone")
    segments = list(Transcriber(base, threads=2).transcribe(tone, beam_size=5, language="en")[0])
    assert not re.search(r"\w", "".join(s.text for s in segments)), segments


def test_a_builtin_model_exported_by_an_older_version_is_rebuilt(tmp_path, capfd):
    import shutil

    from edge_asr.model_dir import EXPORT_FORMAT, ModelCard
    from edge_asr.models import builtin_dir, resolve_model

    stale = builtin_dir("tiny.en", tmp_path)
    shutil.copytree(resolve_model("tiny.en"), stale)
    card = ModelCard.load(stale)
    card.export_format = 1
    card.save(stale)
    assert resolve_model("tiny.en", tmp_path) == stale
    assert "exported by an older edge-asr; rebuilding" in capfd.readouterr().err
    assert ModelCard.load(stale).export_format == EXPORT_FORMAT
