"""The short-utterance fast path: the encoder sees only the seconds present, not a padded 30 s window."""

import contextlib

from conftest import SPEECH_DEV, wer

from edge_asr.audio import load_audio
from edge_asr.frontend import N_FRAMES
from edge_asr.model_dir import FastPath, ModelCard
from edge_asr.transcriber import fast_path_frames, repeats_itself


def test_fast_path_frames():
    assert fast_path_frames(280, 1.0) == 400  # 2.8 s + 1 s of padding -> 4 s
    assert fast_path_frames(300, 0.0) == 300  # whole seconds stay as they are
    assert fast_path_frames(1, 0.0) == 100
    assert fast_path_frames(2950, 1.0) == N_FRAMES  # never more than a window


@contextlib.contextmanager
def encoder_inputs(transcriber):
    """Record the mel frame count of every encoder call (the real engine runs)."""
    frames: list[int] = []
    engine = transcriber.engine
    real = engine.encode
    engine.encode = lambda mel: (frames.append(mel.shape[1]), real(mel))[1]
    try:
        yield frames
    finally:
        del engine.encode


def test_fast_path_encodes_only_the_audio_present(transcriber):
    path = SPEECH_DEV / "speechbrain_example1.wav"  # 3.3 s
    reference = "the birch canoe slid on the smooth planks"
    with encoder_inputs(transcriber) as frames:
        fast = "".join(s.text for s in transcriber.transcribe(path, fast_path=True)[0])
        full = "".join(s.text for s in transcriber.transcribe(path, fast_path=False)[0])
    pad_s = transcriber.card.fast_path.pad_s
    assert frames == [fast_path_frames(len(load_audio(path)) // 160, pad_s), N_FRAMES]
    assert frames[0] <= 500  # 3.3 s of audio: a 5 s encoder input at most, not 30 s
    assert wer([reference], [fast]) == 0 and wer([reference], [full]) == 0, (fast, full)


def test_the_model_card_decides_by_default(transcriber):
    path = SPEECH_DEV / "ljspeech_LJ001-0013.wav"
    card = transcriber.card.fast_path
    saved = (card.safe, card.pad_s)
    try:
        with encoder_inputs(transcriber) as frames:
            card.safe = False
            segments, info = transcriber.transcribe(path)
            list(segments)
            assert info.options["fast_path"] is False
            card.safe, card.pad_s = True, 2.0
            segments, info = transcriber.transcribe(path)
            text = "".join(s.text for s in segments)
        assert info.options["fast_path"] is True and frames == [N_FRAMES, 500]  # 2.6 s + 2 s -> 5 s
        assert "ugly ones" in text
    finally:
        card.safe, card.pad_s = saved


def test_card_field_is_backwards_compatible(model_dir, tmp_path):
    import shutil

    import yaml

    copy = tmp_path / "old"
    shutil.copytree(model_dir, copy)
    data = yaml.safe_load((copy / "model.yaml").read_text())
    data.pop("fast_path", None)  # a card written before the field existed
    (copy / "model.yaml").write_text(yaml.safe_dump(data))
    assert ModelCard.load(copy).fast_path == FastPath()  # not safe: the full window, as before
    data["fast_path"] = {"safe": True, "pad_s": 1.0, "measured": {"wer_full": 10.6, "wer_fast": 10.4}}
    (copy / "model.yaml").write_text(yaml.safe_dump(data))
    assert ModelCard.load(copy).fast_path.safe is True


def test_padding_is_a_transcribe_option(transcriber):
    """More padding than the card's (accuracy back for a longer encoder pass) without touching the card."""
    path = SPEECH_DEV / "ljspeech_LJ001-0013.wav"  # 2.6 s
    with encoder_inputs(transcriber) as frames:
        segments, info = transcriber.transcribe(path, fast_path=True, fast_path_pad_s=4.0)
        text = "".join(s.text for s in segments)
    assert frames == [700] and info.options["fast_path_pad_s"] == 4.0  # 2.6 s + 4 s -> 7 s
    assert "ugly ones" in text
    segments, info = transcriber.transcribe(path, fast_path=True)
    list(segments)
    assert info.options["fast_path_pad_s"] == transcriber.card.fast_path.pad_s


def test_repeats_itself():
    assert repeats_itself("Go forward ten meters. Go forward ten meters.")
    assert repeats_itself("stop the lardin' stop the lardin'")
    assert not repeats_itself("Hold on, hold fast, hold out. Patience is genius.")
    assert not repeats_itself("five five five") and not repeats_itself("Lobsters and lobsters.")


def test_a_doubtful_fast_path_window_is_decoded_again_on_the_full_window(transcriber):
    path = SPEECH_DEV / "speechbrain_example1.wav"  # 3.3 s
    reference = "the birch canoe slid on the smooth planks"
    with encoder_inputs(transcriber) as frames:
        # A log-prob threshold of 0 makes every hypothesis "too unlikely", as a misled short context's would be.
        segments, _ = transcriber.transcribe(path, fast_path=True, log_prob_threshold=0.0, temperature=0.0)
        doubtful = "".join(s.text for s in segments)
        segments, _ = transcriber.transcribe(path, fast_path=True, temperature=0.0)
        trusted = "".join(s.text for s in segments)
        segments, _ = transcriber.transcribe(path, fast_path=True, log_prob_threshold=0.0, temperature=0.0,
                                             fast_path_fallback=False)
        kept = "".join(s.text for s in segments)
    fast = fast_path_frames(len(load_audio(path)) // 160, transcriber.card.fast_path.pad_s)
    assert frames == [fast, N_FRAMES, fast, fast]  # the doubtful one again in full; the trusted one and one
    assert kept == trusted                          # with the re-decode turned off, not
    assert wer([reference], [doubtful]) == 0 and wer([reference], [trusted]) == 0, (doubtful, trusted)


def test_fast_path_recipe_steps_parse_and_fail_on_one_line():
    """`distill_short` (torch, before export) and `measure_fast_path` are shrink recipe steps."""
    import pytest

    from edge_asr.errors import ConfigError
    from quantize.recipe import parse_recipe

    recipe = parse_recipe({"name": "short", "steps": [{"distill_short": {"steps": 300, "train_blocks": 2}},
                                                      {"quantize_int8": {}}, {"measure_fast_path": {}}]})
    assert [n for n, _ in recipe.parsed()] == ["distill_short", "export", "quantize_int8", "measure_fast_path"]
    with pytest.raises(ConfigError, match="put it before 'export'"):
        parse_recipe({"name": "x", "steps": [{"export": {}}, {"distill_short": {}}]})
    with pytest.raises(ConfigError, match=r"unknown key 'steps\[0\]\.distill_short\.stepz'"):
        parse_recipe({"name": "x", "steps": [{"distill_short": {"stepz": 3}}]})


def test_the_default_model_ships_a_distilled_encoder_and_takes_the_fast_path(transcriber):
    """tiny.en-int8 is built with `distilled_encoder`: its card carries the verdict measured for that encoder,
    so a short file goes through the fast path without being asked to."""
    assert transcriber.card.recipe["name"] == "int8-fast"
    assert transcriber.card.recipe["distilled_encoder"]["file"] == "tiny.en-fast-encoder.npz"
    fast_path = transcriber.card.fast_path
    assert fast_path.safe and fast_path.pad_s == 1.0 and fast_path.measured["real"]["wer_fast"] > 0
    path = SPEECH_DEV / "speechbrain_example1.wav"  # 3.3 s
    with encoder_inputs(transcriber) as frames:
        segments, info = transcriber.transcribe(path, temperature=0.0)
        text = "".join(s.text for s in segments)
    assert info.options["fast_path"] is True and frames == [fast_path_frames(330, 1.0)]  # 5 s, not 30
    assert wer(["the birch canoe slid on the smooth planks"], [text]) == 0, text


def test_the_shipped_verdict_holds_when_measured_again(model_dir):
    """The measurement behind the default's `fast_path.safe`, re-run on the model CI just built: on the 31 real
    short recordings and the 36 synthesized commands alike, the fast path within 0.5 WER points of the full
    window."""
    from quantize.distill_short import measure_fast_path

    measured = measure_fast_path(model_dir, write=False, log=lambda *_: None)
    assert measured["safe"], measured
    shipped = ModelCard.load(model_dir).fast_path.measured
    # Another CPU's kernels may round differently and flip a word or two, not more.
    assert abs(measured["wer_fast"] - shipped["wer_fast"]) <= 1.0, (measured, shipped)


def test_a_distilled_encoder_refuses_other_weights(tmp_path):
    """Its tensors are differences from tiny.en's: added to other weights they would be noise."""
    import pytest

    from edge_asr.errors import ModelError
    from quantize.distill_short import apply_encoder
    from quantize.export import build_model
    from quantize.recipe import RECIPES_DIR
    from quantize.weights import load_weights

    model = build_model(load_weights("tiny.en"))
    with pytest.raises(ModelError, match="distilled from other weights"):
        apply_encoder(model, "0" * 64, RECIPES_DIR / "tiny.en-fast-encoder.npz")
    with pytest.raises(ModelError, match="no such distilled encoder file"):
        apply_encoder(model, "0" * 64, tmp_path / "missing.npz")


def test_a_default_model_built_by_an_older_recipe_is_rebuilt():
    from edge_asr.model_dir import EXPORT_FORMAT
    from edge_asr.models import _outdated

    card = ModelCard.__new__(ModelCard)
    card.export_format, card.recipe = EXPORT_FORMAT, {"name": "int8"}
    assert "now 'int8-fast'" in _outdated(card, "tiny.en-int8")
    card.recipe = {"name": "int8-fast"}
    assert _outdated(card, "tiny.en-int8") is None
