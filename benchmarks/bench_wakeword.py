"""Wake-word benchmark (a script, not a test): what the issue's targets ask for, on real audio.

  recall    alexa recall and false accepts per hour: 158 real "alexa" clips against real negatives
            (bare "jarvis", other keywords, speech-dev) plus synthetic noise; openWakeWord alone (the
            peer), with listen's VAD gate, and with the second stage too (first stage 0.2, the local
            transcriber verifies candidates below 0.9).
  cpu       CPU of the idle listening loop, per audio second, vs openwakeword.Model on the same frames.
  latency   end of a ~3 s command -> action, streamed at real-time pace as a microphone would deliver it:
            listen's defaults (transcribe-ahead, a whole command ends at a short pause) vs the same without
            acoustic rescoring, vs the full trailing silence, vs transcribing only after the endpoint; with
            a breakdown (VAD end, endpoint, action).
  matching  command matching over TTS utterances (espeak-ng, flite, festival voices) through listen (a real
            "alexa", then the command) with noise at 20 and 15 dB SNR, on a dev set and five held-out sets
            (other voices, phrasings and commands); tolerant vs exact matching of the same transcripts, and
            whether a few unrelated requests per set are answered no_match. With --cloud MODEL, `edge-asr
            serve` runs that model on 127.0.0.1 (beam 5) and listen escalates the commands it is unsure of
            to it (listen.escalate), as a Pi with an escalation endpoint does.

    python benchmarks/bench_wakeword.py [--sections recall,cpu,latency,matching] [--model DIR]
        [--fast-path true|false|card] [--beam-size N] [--snr 20,15] [--sets dev,heldout,...,heldout5]
        [--repeats N] [--rescore off|MAX_DROP] [--cloud base] [--json out.json] [--dump DIR]

Needs espeak-ng, flite, festival (and the voices festvox-us-slt-hts, festvox-kdlpc16k) and sox (TTS +
resampling) and the default transcription model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout, and the tests' TTS/sox helpers

from wakeword_helpers import clips, concat, silence, tts  # noqa: E402

from edge_asr.audio import load_audio  # noqa: E402
from wakeword.commands import ListenPlan, WakeWordPlan  # noqa: E402
from wakeword.config import ListenSection  # noqa: E402
from wakeword.detector import WakeWordDetector, WakeWordSpec  # noqa: E402
from wakeword.evaluate import Evaluation, score_clip, score_files  # noqa: E402
from wakeword.grammar import Grammar  # noqa: E402

SR = 16000
# Picovoice's multi-keyword demo says "Alexa" among its keywords: a true positive, not a negative.
CONTAINS_ALEXA = {"porcupine_multiple_keywords.wav"}
VOICES = ["espeak:en-us", "espeak:en-gb", "flite:slt", "flite:awb", "festival"]


def make_transcribers(args):
    """What listen transcribes with (wakeword.verify.ListenTranscribers), one model, as listen has."""
    from edge_asr import Transcriber
    from wakeword.verify import listen_transcribers

    transcriber = Transcriber(args.model, threads=args.threads)
    print(f"model {transcriber.model_dir} (fast path for commands: {args.fast_path}, beam {args.beam_size})",
          flush=True)
    return listen_transcribers(transcriber, "en", args.fast_path, args.beam_size)


def noise(kind: str, n_samples: int, rms: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n_samples)
    if kind == "pink":  # 1/f power: shape white noise in the frequency domain
        spectrum = np.fft.rfft(white)
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        white = np.fft.irfft(spectrum, n=len(white))
    elif kind == "brown":
        white = np.cumsum(white)
        white -= np.convolve(white, np.ones(SR) / SR, mode="same")  # keep it from drifting
    return (white / np.sqrt(np.mean(white**2)) * rms).astype(np.float32)


def mix_at_snr(speech: np.ndarray, kind: str, snr_db: float, seed: int) -> np.ndarray:
    voiced = speech[np.abs(speech) > 0.01]
    level = np.sqrt(np.mean(voiced**2)) if len(voiced) else 0.05
    return np.clip(speech + noise(kind, len(speech), level / 10 ** (snr_db / 20), seed), -1, 1)


# --- recall and false accepts -----------------------------------------------------------------------------


def section_recall(args, transcribe) -> dict:
    from wakeword.verify import TranscriptVerifier

    with open(DATA / "wakeword-dev" / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    negatives = [
        DATA / "wakeword-dev" / r["wav"]
        for r in rows
        if r["label"] != "alexa" and r["wav"] not in CONTAINS_ALEXA
    ]
    negatives += sorted((DATA / "speech-dev").glob("*.wav"))
    started = time.monotonic()
    noise_kinds = [(k, r) for k in ("white", "pink", "brown") for r in (0.003, 0.01, 0.03, 0.1)]
    traces = {}
    for gate in (None, 0.1):  # openWakeWord scores every frame; listen gates on Silero VAD
        detector = WakeWordDetector([WakeWordSpec("alexa")], vad_gate=gate)
        noise_negatives = [
            score_clip(detector, "alexa", noise(kind, 30 * SR, rms, seed), f"noise:{kind}@{rms}")
            for seed, (kind, rms) in enumerate(noise_kinds)
        ]
        traces[gate] = (score_files(clips("alexa"), "alexa", with_word_end=True, vad_gate=gate),
                        score_files(negatives, "alexa", vad_gate=gate) + noise_negatives)
    positives, all_negatives = traces[0.1]
    print(f"scored {len(positives)} positives and {len(all_negatives)} negative clips, with and without the "
          f"VAD gate, in {time.monotonic() - started:.0f} s", flush=True)
    verifier = TranscriptVerifier(transcribe, ["alexa"])
    detectors = (
        ("openWakeWord alone", Evaluation(WakeWordSpec("alexa"), *traces[None]), (0.3, 0.5, 0.7, 0.9)),
        ("+ VAD gate", Evaluation(WakeWordSpec("alexa"), positives, all_negatives), (0.3, 0.5)),
        ("+ second stage (listen)", Evaluation(WakeWordSpec("alexa", accept_threshold=0.9), positives,
                                               all_negatives, verify=verifier.verify), (0.1, 0.2, 0.3)),
    )
    rows_out = []
    for name, evaluation, thresholds in detectors:
        for t in thresholds:
            r = evaluation.at(t)
            noise_fa = sum(1 for p in r.false_accept_clips if p.startswith("noise:"))
            rows_out.append({"detector": name, **r.to_dict(), "noise_false_accepts": noise_fa})
    noise_minutes = 30 * len(noise_kinds) / 60
    hours = rows_out[0]["negative_hours"]
    print(
        f"\nalexa: {len(positives)} positive clips; negatives {hours * 60:.1f} min "
        f"({noise_minutes:.0f} min of it noise)"
    )
    print(
        f"{'detector':<27} {'thr':>5} {'recall':>7} {'missed':>6} {'FA':>3} {'FA/h':>6} {'lat p50':>8} "
        f"{'verified-out':>12}"
    )
    for r in rows_out:
        print(
            f"{r['detector']:<27} {r['threshold']:>5.2f} {r['recall'] * 100:>6.1f}% "
            f"{r['positives'] - r['detected']:>6} {r['false_accepts']:>3} "
            f"{r['false_accepts_per_hour']:>6.2f} "
            f"{r['latency_median_s']:>7.2f}s {r['verified_rejections']:>12}"
        )
    for r in rows_out:
        if r["detector"].startswith("+ second") and r["threshold"] == 0.2 or r["threshold"] == 0.5:
            print(f"  {r['detector']} at {r['threshold']}: missed {[Path(p).name for p in r['missed']]}, "
                  f"false accepts {[Path(p).name for p in r['false_accept_clips']]}")
    return {"rows": rows_out}


# --- idle CPU ---------------------------------------------------------------------------------------------


def idle_plan(vad_gate: float | None = 0.1) -> ListenPlan:
    return ListenPlan(
        ListenSection(vad_gate=vad_gate),
        [WakeWordPlan(WakeWordSpec("alexa", 0.2, accept_threshold=0.9), ["alexa"])],
        Grammar([]),
    )


def section_cpu(args, transcribe) -> dict:
    import openwakeword

    from edge_asr.stream import open_stream
    from wakeword.listener import Listener

    room = noise("pink", 20 * SR, 0.005, seed=7)  # a quiet room: nothing for the detector to find
    frames = [room[i : i + 1280] for i in range(0, len(room), 1280)]

    def never(audio):
        raise AssertionError("the idle loop must not transcribe")

    ours, ungated, theirs = [], [], []
    for _ in range(3):
        for gate, out in ((0.1, ours), (None, ungated)):
            listener = Listener(idle_plan(vad_gate=gate), never)
            cpu = time.process_time()
            for frame in frames:
                for _event in listener.feed(frame):
                    pass
            out.append((time.process_time() - cpu) / (len(room) / SR))
        model = openwakeword.Model(wakeword_models=["alexa"], inference_framework="onnx")
        pcm = [(f * 32767).astype(np.int16) for f in frames]
        cpu = time.process_time()
        for frame in pcm:
            model.predict(frame)
        theirs.append((time.process_time() - cpu) / (len(room) / SR))
    # The same loop paced like a microphone: between frames the process sleeps, and each frame then
    # costs more (cold caches), so this is the number that matters for a device listening all day.
    paced_runs: dict[float | None, list[float]] = {0.1: [], None: []}
    for _ in range(3):
        for gate, runs in paced_runs.items():
            listener = Listener(idle_plan(vad_gate=gate), never)
            wall, cpu = time.monotonic(), time.process_time()
            for frame in open_stream(room[: 10 * SR], realtime=True):
                for _event in listener.feed(frame):
                    pass
            runs.append((time.process_time() - cpu) / (time.monotonic() - wall))
    paced = {gate: statistics.median(runs) for gate, runs in paced_runs.items()}
    result = {
        "paced_cpu_fraction": paced[0.1],
        "paced_without_vad_gate": paced[None],
        "fast_loop_cpu_fraction": statistics.median(ours),
        "fast_loop_without_vad_gate": statistics.median(ungated),
        "fast_loop_openwakeword_model": statistics.median(theirs),
        "load_average": os.getloadavg(),
    }
    print(
        f"\nidle listening CPU, share of one core (a quiet room; load average {os.getloadavg()[0]:.1f}):\n"
        f"  paced at real time, median of 3 x 10 s: edge-asr {paced[0.1]:.2%}, without the VAD gate {paced[None]:.2%} "
        f"(ratio {paced[0.1] / paced[None]:.2f})\n"
        f"  as fast as possible, median of 3 x 20 s: edge-asr {statistics.median(ours):.2%}, without the VAD "
        f"gate {statistics.median(ungated):.2%}, openwakeword.Model {statistics.median(theirs):.2%} "
        f"(ratio {statistics.median(ours) / statistics.median(theirs):.2f})"
    )
    return result


# --- end of speech -> action -----------------------------------------------------------------------------


def section_latency(args, transcribers, tmp: Path) -> dict:
    """End of speech -> action at real-time pace (as a microphone delivers audio), for listen's defaults,
    the same without acoustic rescoring (what it adds), and two peers: the full trailing silence always (no
    early end at a whole command), and transcribing only after the endpoint (no transcribe-ahead either)."""
    from edge_asr.stream import open_stream
    from wakeword.commands import plan_listen
    from wakeword.config import CaptureConfig, CommandConfig
    from wakeword.listener import Listener

    commands = [CommandConfig("lights", ["turn {state:on|off} the {room} lights"])]
    variants = {
        "listen": (ListenSection(commands=commands), True),
        "no rescoring": (ListenSection(commands=commands, rescore_max_drop=None), True),
        "full trailing silence": (ListenSection(capture=CaptureConfig(complete_silence_s=None),
                                                commands=commands), True),
        "after endpoint": (ListenSection(capture=CaptureConfig(complete_silence_s=None), commands=commands),
                           False),
    }
    samples = []
    for n, voice in enumerate(VOICES):
        lead, pause = 1.0, 0.4
        alexa = clips("alexa")[10 + n]
        command = tts("turn off the upstairs living room lights", tmp / f"lat{n}.cmd.wav", voice)
        wav = concat(tmp / f"lat{n}.wav", silence(tmp / "lead.wav", lead), alexa, silence(tmp / "p.wav", pause),
                     command, silence(tmp / "tail.wav", 2.0))
        speech_end = lead + len(load_audio(alexa)) / SR + pause + len(load_audio(command)) / SR
        audio = mix_at_snr(load_audio(wav), "pink", 20, seed=n)
        for repeat in range(args.repeats):
            for label, (section, ahead) in variants.items():
                listener = Listener(plan_listen(section, "bench"), transcribers.wake_check, transcribe_ahead=ahead,
                                    transcribe_command=transcribers.command,
                                    command_retry=transcribers.command_retry)
                start = time.monotonic()
                for event in listener.run(open_stream(audio, realtime=True)):
                    if event["event"] == "command":
                        samples.append({
                            "variant": label, "voice": voice, "repeat": repeat,
                            "command_s": len(load_audio(command)) / SR,
                            "vad_end_s": event["t"] - speech_end,  # the VAD's end of speech vs the true one
                            "speech_end_to_endpoint_s": event["endpoint_t"] - speech_end,
                            "endpoint_to_action_s": event["latency_s"],
                            "speech_end_to_action_s": time.monotonic() - start - speech_end,
                            "slots_ok": event["slots"] == {"state": "off", "room": "upstairs living room"},
                            "text": event["text"],
                        })
                    elif event["event"] == "no_match":
                        print(f"  no match [{label}, {voice}]: heard {event['text']!r}", flush=True)
    # What one transcription of such a capture costs by itself (2 s pre-roll + command + 0.3 s of silence).
    capture = audio[int((speech_end - 4.6) * SR): int((speech_end + 0.3) * SR)]
    prompt = plan_listen(variants["listen"][0], "bench").grammar.prompt()
    alone = {}
    for name, transcribe in (("command transcriber", transcribers.command), ("full window", transcribers.wake_check)):
        walls, cpus = [], []
        for _ in range(3):
            wall, cpu = time.monotonic(), time.process_time()
            transcribe(capture, prompt)
            walls.append(time.monotonic() - wall)
            cpus.append(time.process_time() - cpu)
        alone[name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}
    result = {"transcription_alone": {"audio_s": len(capture) / SR, **alone}, "load_average": os.getloadavg()}
    keys = ("vad_end_s", "speech_end_to_endpoint_s", "endpoint_to_action_s", "speech_end_to_action_s")
    print(f"\nend of a ~{statistics.median(s['command_s'] for s in samples):.1f} s command -> action, "
          f"real-time pace, median of {len(VOICES)} voices x {args.repeats}; seconds after the end of speech:")
    print(f"  {'':<22} {'VAD end':>8} {'endpoint':>9} {'endpoint->action':>17} {'speech end->action':>19} {'ok':>4}")
    for label in variants:
        mine = [x for x in samples if x["variant"] == label]
        result[label] = {"runs": len(mine), "slots_ok": sum(x["slots_ok"] for x in mine),
                         **{k: statistics.median(x[k] for x in mine) if mine else None for k in keys}}
        r = result[label]
        if mine:
            print(f"  {label:<22} {r['vad_end_s']:>8.3f} {r['speech_end_to_endpoint_s']:>9.3f} "
                  f"{r['endpoint_to_action_s']:>17.3f} {r['speech_end_to_action_s']:>19.3f} "
                  f"{r['slots_ok']:>2}/{r['runs']}")
    for x in samples:
        if not x["slots_ok"]:
            print(f"  wrong slots [{x['variant']}, {x['voice']}]: heard {x['text']!r}")
    print(f"  one transcription of a {len(capture) / SR:.1f} s capture alone: "
          + "; ".join(f"{k} {v['wall_s']:.3f} s wall, {v['cpu_s']:.3f} s CPU" for k, v in alone.items())
          + f"; load average {result['load_average'][0]:.1f}")
    result["samples"] = samples
    return result


# --- command matching ------------------------------------------------------------------------------------

# Two sets. "dev" is what matching was tuned on; "heldout" has other voices, other phrasings and other
# commands (a different home), and is only scored, never looked at while tuning.
DEV_COMMANDS = {
    # Rooms are a closed set, as in a real home: a choice slot lets matching snap "garbage" to "garage".
    "lights": ["turn {state:on|off} the {room:kitchen|bedroom|living room|garage|bathroom} lights"],
    "timer": ["set a timer for {minutes:int} minutes"],
    "thermostat": ["set the temperature to {degrees:int} degrees"],
    "weather": ["what's the weather [like] [today]"],
    "volume": ["turn the volume {direction:up|down}"],
}
DEV_UTTERANCES = [
    ("turn on the kitchen lights", "lights", {"state": "on", "room": "kitchen"}),
    ("turn off the bedroom lights", "lights", {"state": "off", "room": "bedroom"}),
    ("turn on the living room lights", "lights", {"state": "on", "room": "living room"}),
    ("turn off the garage lights", "lights", {"state": "off", "room": "garage"}),
    ("set a timer for five minutes", "timer", {"minutes": 5}),
    ("set a timer for twenty minutes", "timer", {"minutes": 20}),
    ("set a timer for three minutes", "timer", {"minutes": 3}),
    ("set the temperature to seventy degrees", "thermostat", {"degrees": 70}),
    ("set the temperature to twenty one degrees", "thermostat", {"degrees": 21}),
    ("what's the weather like today", "weather", {}),
    ("turn the volume up", "volume", {"direction": "up"}),
    ("turn the volume down", "volume", {"direction": "down"}),
]
HELDOUT_VOICES = ["espeak:en-gb-scotland", "espeak:en-us+f3", "flite:rms", "flite:kal16"]
HELDOUT_COMMANDS = {
    "lights": ["turn {state:on|off} the {room:kitchen|bedroom|hallway|office} lights",
               "switch {state:on|off} the {room:kitchen|bedroom|hallway|office} lights"],
    "lock": ["lock the {door:front|back|garage} door"],
    "music": ["play {genre:jazz|rock|classical|pop} music", "put on some {genre:jazz|rock|classical|pop} music"],
    "alarm": ["set an alarm for {hour:int} [o'clock] [in the morning]"],
    "blinds": ["{action:open|close} the blinds"],
    "timer": ["set a timer for {minutes:int} minutes"],
    "shopping": ["add {item} to the shopping list"],
}
HELDOUT_UTTERANCES = [
    ("lock the front door", "lock", {"door": "front"}),
    ("lock the back door", "lock", {"door": "back"}),
    ("play classical music", "music", {"genre": "classical"}),
    ("put on some rock music", "music", {"genre": "rock"}),
    ("set an alarm for seven o'clock", "alarm", {"hour": 7}),
    ("set an alarm for six in the morning", "alarm", {"hour": 6}),
    ("switch off the hallway lights", "lights", {"state": "off", "room": "hallway"}),
    ("turn on the office lights", "lights", {"state": "on", "room": "office"}),
    ("open the blinds", "blinds", {"action": "open"}),
    ("close the blinds", "blinds", {"action": "close"}),
    ("set a timer for fifteen minutes", "timer", {"minutes": 15}),
    ("set a timer for forty five minutes", "timer", {"minutes": 45}),
    ("add milk to the shopping list", "shopping", {"item": "milk"}),
    ("add paper towels to the shopping list", "shopping", {"item": "paper towels"}),
]
# Held-out v2, written before acoustic rescoring (v1 had informed two commits). Voices used in neither set
# above: espeak-ng Caribbean and New York (with the "linda" female variant), flite's 8 kHz kal, and festival's
# one installed voice (kal_diphone, in dev) slowed 1.2x and pitched up. New phrasings of the bench's commands
# and a new command (fan). Its "alexa" clips (80-99) end within 1.8 s of the word, so no pause before a
# command outlasts start_timeout_s. Scored once, at the end.
HELDOUT2_VOICES = ["espeak:en-029", "espeak:en-us-nyc+linda", "flite:kal", "festival:slow-high"]
HELDOUT2_ROOMS = "kitchen|bedroom|living room|hallway|office|garage"
GENRES = "jazz|rock|classical|pop"
HELDOUT2_COMMANDS = {
    "lights": [f"turn {{state:on|off}} the {{room:{HELDOUT2_ROOMS}}} lights",
               f"switch {{state:on|off}} the {{room:{HELDOUT2_ROOMS}}} lights",
               f"turn the {{room:{HELDOUT2_ROOMS}}} lights {{state:on|off}}"],
    "fan": ["turn {state:on|off} the fan"],
    "timer": ["set a timer for {minutes:int} minutes", "start a {minutes:int} minute timer"],
    "thermostat": ["set the temperature to {degrees:int} degrees", "make it {degrees:int} degrees"],
    "weather": ["what's the weather [like] [today]", "will it rain [today]"],
    "volume": ["turn the volume {direction:up|down}", "turn it {direction:up|down}"],
    "lock": ["lock the {door:front|back|garage} door"],
    "music": [f"play {{genre:{GENRES}}} music", f"put on some {{genre:{GENRES}}} music"],
    "alarm": ["set an alarm for {hour:int} [o'clock] [in the morning]", "wake me up at {hour:int} [o'clock]"],
    "shopping": ["add {item} to the shopping list", "put {item} on the shopping list"],
}
HELDOUT2_UTTERANCES = [
    ("turn the hallway lights off", "lights", {"state": "off", "room": "hallway"}),
    ("switch on the living room lights", "lights", {"state": "on", "room": "living room"}),
    ("turn off the fan", "fan", {"state": "off"}),
    ("start a ten minute timer", "timer", {"minutes": 10}),
    ("set a timer for thirty minutes", "timer", {"minutes": 30}),
    ("make it sixty eight degrees", "thermostat", {"degrees": 68}),
    ("will it rain today", "weather", {}),
    ("turn it down", "volume", {"direction": "down"}),
    ("lock the garage door", "lock", {"door": "garage"}),
    ("play jazz music", "music", {"genre": "jazz"}),
    ("put on some pop music", "music", {"genre": "pop"}),
    ("wake me up at eight o'clock", "alarm", {"hour": 8}),
    ("put eggs on the shopping list", "shopping", {"item": "eggs"}),
    ("add orange juice to the shopping list", "shopping", {"item": "orange juice"}),
]
# Held-out v3, written after v2's result and run once (the rule was set down before: >= 95 % at both SNRs).
# Five voices in no set above: festival's statistical slt (HTS) and ked diphone voices (Debian festvox-us-slt-hts,
# festvox-kdlpc16k), espeak-ng received pronunciation and en-us's third male variant, flite slt slowed 1.15x and
# pitched up. A new home's commands, a free-text one among them. Its "alexa" clips (120-139) end within 1.84 s
# of the word (100-119 hold one with 3.25 s of silence after it, v1's pause artifact).
HELDOUT3_VOICES = ["festival:slt-hts", "festival:ked", "espeak:en-gb-x-rp", "espeak:en-us+m3", "flite:slt-slow-high"]
HELDOUT3_ROOMS = "kitchen|bedroom|living room|porch|basement"
HELDOUT3_COMMANDS = {
    "lights": [f"turn {{state:on|off}} the {{room:{HELDOUT3_ROOMS}}} lights"],
    "dim": [f"dim the {{room:{HELDOUT3_ROOMS}}} lights"],
    "tv": ["turn {state:on|off} the tv", "switch {state:on|off} the tv"],
    "timer": ["set a timer for {minutes:int} minutes"],
    "heating": ["set the heating to {degrees:int} degrees"],
    "time": ["what time is it"],
    "call": ["call {contact:mom|dad|grandma|the office}"],
    "music": ["{action:pause|stop|resume} the music"],
    "reminder": ["remind me to {task}"],
}
HELDOUT3_UTTERANCES = [
    ("turn on the porch lights", "lights", {"state": "on", "room": "porch"}),
    ("turn off the basement lights", "lights", {"state": "off", "room": "basement"}),
    ("dim the living room lights", "dim", {"room": "living room"}),
    ("switch off the tv", "tv", {"state": "off"}),
    ("set a timer for twelve minutes", "timer", {"minutes": 12}),
    ("set a timer for ninety minutes", "timer", {"minutes": 90}),
    ("set the heating to nineteen degrees", "heating", {"degrees": 19}),
    ("what time is it", "time", {}),
    ("call grandma", "call", {"contact": "grandma"}),
    ("pause the music", "music", {"action": "pause"}),
    ("resume the music", "music", {"action": "resume"}),
    ("remind me to water the plants", "reminder", {"task": "water the plants"}),
]
# Held-out v4, written once beam 3 became the default (v3 had then been looked at with greedy and with beam 3),
# run once under a rule set before (>= 95 % at both SNRs). Five voices in no set above: espeak-ng Lancaster,
# West Midlands and en-us+f4, flite rms and festival ked spoken faster (0.9x). Another home's commands.
# Its "alexa" clips (40-59), used by no other set, end within 2.6 s of the word.
HELDOUT4_VOICES = ["espeak:en-gb-x-gbclan", "espeak:en-gb-x-gbcwmd", "espeak:en-us+f4", "flite:rms-fast",
                   "festival:ked-fast"]
HELDOUT4_COMMANDS = {
    "garage": ["{action:open|close} the garage door"],
    "vacuum": ["start the [robot] vacuum"],
    "fan": ["set the fan [speed] to {speed:int}"],
    "oven": ["preheat the oven to {degrees:int} degrees"],
    "todo": ["add {task} to my to do list"],
    "calendar": ["what's on my calendar [today]"],
    "skip": ["skip this song", "next song"],
    "volume": ["set the volume to {level:int}"],
    "sprinklers": ["turn {state:on|off} the sprinklers"],
    "alarm": ["{action:arm|disarm} the alarm"],
    "lights": ["turn {state:on|off} the {room:kitchen|dining room|study|nursery} lights"],
    "timer": ["set a timer for {minutes:int} minutes"],
}
HELDOUT4_UTTERANCES = [
    ("open the garage door", "garage", {"action": "open"}),
    ("start the robot vacuum", "vacuum", {}),
    ("set the fan speed to three", "fan", {"speed": 3}),
    ("preheat the oven to three hundred and fifty degrees", "oven", {"degrees": 350}),
    ("add call the dentist to my to do list", "todo", {"task": "call the dentist"}),
    ("what's on my calendar today", "calendar", {}),
    ("skip this song", "skip", {}),
    ("set the volume to seven", "volume", {"level": 7}),
    ("turn off the sprinklers", "sprinklers", {"state": "off"}),
    ("disarm the alarm", "alarm", {"action": "disarm"}),
    ("turn on the dining room lights", "lights", {"state": "on", "room": "dining room"}),
    ("turn off the study lights", "lights", {"state": "off", "room": "study"}),
    ("set a timer for eighteen minutes", "timer", {"minutes": 18}),
]
# Held-out v5 (2026-11-28): written after command escalation, to check it (and listen alone) on requests no
# change had seen, under rules set down before its one run: 5 voices in no other set, a new home's commands.
HELDOUT5_VOICES = ["espeak:en-us+m5", "espeak:en+klatt", "espeak:en-us+f2", "flite:awb-fast-high",
                   "festival:kal-slow-low"]
HELDOUT5_COMMANDS = {
    "blinds": ["{action:raise|lower} the blinds"],
    "coffee": ["make me a coffee", "start the coffee machine"],
    "channel": ["switch the tv to channel {channel:int}"],
    "tv": ["turn {state:on|off} the tv"],
    "note": ["remember that {note}"],
    "call": ["call {person}"],
    "weather": ["what's the weather in {city}"],
    "door": ["{action:lock|unlock} the {door:front|back|side} door"],
    "dim": ["dim the {room:hall|bathroom|office} lights to {level:int} percent"],
    "cancel": ["cancel the timer"],
    "snooze": ["snooze the alarm"],
    "music": ["play some {genre:jazz|blues|pop}"],
}
HELDOUT5_UTTERANCES = [
    ("lower the blinds", "blinds", {"action": "lower"}),
    ("make me a coffee", "coffee", {}),
    ("switch the tv to channel twelve", "channel", {"channel": 12}),
    ("turn off the tv", "tv", {"state": "off"}),
    ("remember that the keys are in the drawer", "note", {"note": "the keys are in the drawer"}),
    ("call mom", "call", {"person": "mom"}),
    ("what's the weather in london", "weather", {"city": "london"}),
    ("unlock the side door", "door", {"action": "unlock", "door": "side"}),
    ("dim the bathroom lights to forty percent", "dim", {"room": "bathroom", "level": 40}),
    ("cancel the timer", "cancel", {}),
    ("snooze the alarm", "snooze", {}),
    ("play some jazz", "music", {"genre": "jazz"}),
]
# A dev set for number slots (not in the default run): teens against tens ("fifteen"/"fifty"), the classic
# confusion, and compounds, said by the dev voices to the dev grammar. For work on numbers, not a held-out set.
NUMBER_WORDS = {13: "thirteen", 30: "thirty", 14: "fourteen", 40: "forty", 15: "fifteen", 50: "fifty",
                16: "sixteen", 60: "sixty", 17: "seventeen", 70: "seventy", 18: "eighteen", 80: "eighty",
                19: "nineteen", 90: "ninety", 24: "twenty four", 45: "forty five", 68: "sixty eight"}
NUMBER_UTTERANCES = [(f"set a timer for {w} minutes", "timer", {"minutes": n}) if i % 2 == 0 else
                     (f"set the temperature to {w} degrees", "thermostat", {"degrees": n})
                     for i, (n, w) in enumerate(NUMBER_WORDS.items())]
# Requests that are no command of the set's grammar: listen must answer no_match. Scored apart from accuracy.
UNRELATED = {
    "dev": ["what's the capital of france", "how do you spell necessary"],
    "heldout": ["who won the football game yesterday", "how far away is the moon"],
    "heldout2": ["tell me a joke about penguins", "how tall is mount everest"],
    "heldout3": ["what is the meaning of life", "who wrote romeo and juliet"],
    "heldout4": ["what's the population of japan", "how many ounces are in a cup"],
    "heldout5": ["what time does the store close", "how old is the universe"],
    "numbers": [],
}
MATCHING_SETS = {
    "dev": (VOICES, DEV_COMMANDS, DEV_UTTERANCES, 20),  # (voices, commands, utterances, first alexa clip)
    "heldout": (HELDOUT_VOICES, HELDOUT_COMMANDS, HELDOUT_UTTERANCES, 60),
    "heldout2": (HELDOUT2_VOICES, HELDOUT2_COMMANDS, HELDOUT2_UTTERANCES, 80),
    "heldout3": (HELDOUT3_VOICES, HELDOUT3_COMMANDS, HELDOUT3_UTTERANCES, 120),
    "heldout4": (HELDOUT4_VOICES, HELDOUT4_COMMANDS, HELDOUT4_UTTERANCES, 40),
    "heldout5": (HELDOUT5_VOICES, HELDOUT5_COMMANDS, HELDOUT5_UTTERANCES, 100),
    "numbers": (VOICES, DEV_COMMANDS, NUMBER_UTTERANCES, 20),
}


def same_slots(got: dict, want: dict) -> bool:
    # Free text comes back as heard: compare it by its words, not its capitals and punctuation.
    from wakeword.grammar import normalize_words

    def norm(v):
        return " ".join(normalize_words(v)) if isinstance(v, str) else v

    return {k: norm(v) for k, v in got.items()} == {k: norm(v) for k, v in want.items()}


def section_matching(args, transcribers, tmp: Path) -> dict:
    """Each utterance goes through `listen` as a stream: a real "alexa", a short pause, the TTS command and
    silence, with noise under all of it; so capture (where the VAD cuts the command), the command
    transcription (prompt, fast path) and matching are what is measured, with listen's defaults throughout
    (the second stage included: a weak first-stage candidate early in the word must not start the capture).
    Accuracy counts the utterances whose wake word was detected (recall has its own section)."""
    from edge_asr.stream import open_stream
    from wakeword.commands import plan_listen
    from wakeword.config import CommandConfig
    from wakeword.listener import Listener
    from wakeword.rescore import AcousticRescorer

    calls: list[tuple] = []  # (audio, path, heard text, rescoring data) of each command transcription
    current: dict = {}

    def recorded(transcribe, path):
        if transcribe is None or not args.dump:
            return transcribe

        def call(audio, prompt=None):
            heard = transcribe(audio, prompt)
            if prompt is not None:  # commands are primed; the wake-word check is not
                listener = current["listener"]
                text, match = listener._text_and_match(heard)
                wide = AcousticRescorer(listener.grammar, limit=200)
                started = time.monotonic()
                free, candidates, scores = wide.scored(heard, text)
                data = {"command_text": text, "free": free, "seconds": time.monotonic() - started,
                        "match": [match.command.name, match.slots, match.score] if match else None,
                        "candidates": [[c.command.name, c.slots, c.text] for c in candidates],
                        "scores": [s.tolist() for s in scores]}
                calls.append((np.asarray(audio, np.float32), path, heard.text, data))
            return heard
        return call

    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
    # Named apart from the loop's expected `want`: a shared name once gave every listener after the first the
    # wake-word check's transcriber for commands.
    wake_check = recorded(transcribers.wake_check, "full")
    transcribe_command = recorded(transcribers.command, "fast")
    retry = recorded(transcribers.command_retry, "full")
    cloud = escalate = None
    if args.cloud:
        from bench_escalation import TOKEN, Cloud

        from edge_asr.cloud import CloudClient
        from edge_asr.models import resolve_model
        from wakeword.verify import cloud_transcriber

        cloud = Cloud(str(resolve_model(args.cloud)), beam=5, threads=args.threads)
        # A deadline no run reaches: the bench measures what the cloud hears, not this machine's load.
        escalate = cloud_transcriber(CloudClient(cloud.endpoint, TOKEN, timeout_s=600), "en")
        print(f"cloud: {args.cloud} on {cloud.url}, beam 5", flush=True)
    out = {}
    for set_name in args.sets.split(","):
        voices, commands, utterances, first_clip = MATCHING_SETS[set_name]
        section = ListenSection(fast_path=args.fast_path, rescore_max_drop=args.rescore,
                                commands=[CommandConfig(n, p) for n, p in commands.items()])
        plan = plan_listen(section, "bench")
        exact = Grammar(plan.grammar.commands, min_score=0.999)
        alexas = clips("alexa")
        for snr in args.snr:
            # One listener for the whole set, as if the utterances came one after another from one
            # microphone (a fresh one per utterance spends more time loading models than listening). Full
            # speed: transcribe-ahead would only start jobs that the next frames make stale.
            listener = Listener(plan, wake_check, transcribe_command=transcribe_command, command_retry=retry,
                                transcribe_ahead=False, escalate=escalate)
            current["listener"] = listener
            results = []
            unrelated = [(u, None, {}) for u in UNRELATED[set_name]]
            calls.clear()
            # Unrelated requests after all commands, so each command keeps its index (its alexa clip and noise).
            rows = [(v, u) for v in voices for u in utterances] + [(v, u) for v in voices for u in unrelated]
            for i, (voice, (text, want, slots)) in enumerate(rows):
                # "-": "heldout2" + "0" must not name the same file as "heldout" + "20" (v2 was scored on v1's
                # clips in a run of all sets: every name from heldout20 on was already there).
                wav = tmp / f"{set_name}-{i}.wav"
                if not wav.exists():
                    concat(wav, silence(tmp / "lead.wav", 0.5), alexas[first_clip + i % 20],
                           silence(tmp / "gap.wav", 0.3), tts(text, tmp / f"{set_name}-{i}.cmd.wav", voice),
                           silence(tmp / "end.wav", 1.5))
                audio = mix_at_snr(load_audio(wav), ("pink", "white", "brown")[i % 3], snr, seed=i)
                events = [e for frame in open_stream(audio) for e in listener.feed(frame)]
                events += list(listener.finish())
                heard = next((e for e in events if e["event"] in ("command", "no_match")), None)
                row = {"voice": voice, "text": text, "woken": any(e["event"] == "wake" for e in events),
                       "heard": heard["text"] if heard else None}
                if want is None:  # an unrelated request: right when no command comes of it
                    row["unrelated"] = True
                    row["tolerant"] = not (heard and heard["event"] == "command")
                    row["exact"] = exact.match(row["heard"] or "") is None
                else:
                    row["tolerant"] = bool(heard and heard["event"] == "command" and heard["command"] == want
                                           and same_slots(heard["slots"], slots))
                    m = exact.match(row["heard"] or "")
                    row["exact"] = m is not None and m.command.name == want and same_slots(m.slots, slots)
                if heard and heard["event"] == "command":
                    row["got"] = {"command": heard["command"], "slots": heard["slots"]}
                if heard and "escalation" in heard:
                    row["escalation"] = esc = heard["escalation"]
                    if esc["status"] == "escalated":  # what listen alone would have answered
                        local = esc["local_command"]
                        row["local_tolerant"] = (local is None if want is None else
                                                 local == want and same_slots(esc["local_slots"] or {}, slots))
                if args.dump:  # what the command transcribers were given and heard, for offline study
                    np.savez_compressed(args.dump / f"{set_name}-{i}_{snr:g}.npz", **{
                        f"audio{k}": c[0] for k, c in enumerate(calls)},
                        meta=json.dumps({"set": set_name, "row": row, "command": want, "slots": slots,
                                         "calls": [c[1:] for c in calls]}, default=str))
                calls.clear()
                results.append(row)
                print(f"  {set_name} {snr:g} dB {i + 1}/{len(rows)} {row['tolerant']} "
                      f"{row['heard']!r}", flush=True)
            woken = [r for r in results if r["woken"] and not r.get("unrelated")]
            others = [r for r in results if r["woken"] and r.get("unrelated")]
            accuracy = {k: sum(r[k] for r in woken) / max(1, len(woken)) for k in ("tolerant", "exact")}
            rejected = sum(r["tolerant"] for r in others)
            escalated = [r["escalation"] for r in results if r["woken"] and "escalation" in r]
            cloud_s = [e["latency_s"] for e in escalated if e["status"] == "escalated"]
            out[f"{set_name}@{snr:g}dB"] = {"utterances": len(results) - len(unrelated) * len(voices),
                                            "woken": len(woken), "snr_db": snr,
                                            "escalated": [len(cloud_s), len(woken) + len(others)],
                                            "prompt": plan.grammar.prompt(), "accuracy": accuracy,
                                            "unrelated_rejected": [rejected, len(others)], "results": results}
            print(f"\ncommand matching, {set_name} set: {len(results) - len(unrelated) * len(voices)} TTS utterances "
                  f"({len(voices)} voices), noise at {snr:g} dB SNR, {len(woken)} woke listen:\n"
                  f"  listen {accuracy['tolerant']:.1%} ({sum(r['tolerant'] for r in woken)}/{len(woken)}); "
                  f"exact matching of the same transcripts {accuracy['exact']:.1%}; unrelated requests "
                  f"answered no_match: {rejected}/{len(others)}")
            if escalate is not None:
                alone = [r.get("local_tolerant", r["tolerant"]) for r in woken]
                alone_others = [r.get("local_tolerant", r["tolerant"]) for r in others]
                out[f"{set_name}@{snr:g}dB"]["without_cloud"] = {"correct": [sum(alone), len(alone)],
                                                                 "unrelated_rejected": [sum(alone_others),
                                                                                        len(others)]}
                print(f"  without the cloud: {sum(alone)}/{len(alone)}, unrelated no_match "
                      f"{sum(alone_others)}/{len(others)}")
                print(f"  escalated to the cloud: {len(cloud_s)} of {len(woken) + len(others)} requests "
                      f"({len(escalated) - len(cloud_s)} tried, the device's answer kept); round trip median "
                      f"{statistics.median(cloud_s) if cloud_s else float('nan'):.2f} s")
            for r in results:
                if not r["tolerant"]:
                    print(f"  miss [{r['voice']}] said {r['text']!r}, heard {r['heard']!r}"
                          + (f" -> {r['got']['command']} {r['got']['slots']}" if r.get("got") else "")
                          + (f" [cloud; the device heard {r['escalation']['local_text']!r}]"
                             if r.get("escalation", {}).get("status") == "escalated" else "")
                          + ("" if r["woken"] else " (no wake word detected)"))
    if cloud is not None:
        cloud.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="recall,cpu,latency,matching")
    parser.add_argument("--model", default=None, help="transcriber model directory (default: the default model)")
    parser.add_argument("--threads", type=int, default=2, help="transcriber threads")
    parser.add_argument("--fast-path", default=ListenSection().fast_path,
                        type=lambda v: {"true": True, "false": False, "card": None}[v.lower()],
                        help="commands on the fast path: true, false or card (default: listen's default)")
    parser.add_argument("--beam-size", type=int, default=ListenSection().beam_size,
                        help="commands: listen.beam_size (default: listen's default; 1: greedy)")
    parser.add_argument("--snr", default=[20.0, 15.0], type=lambda v: [float(x) for x in v.split(",")],
                        help="matching: speech-to-noise ratios in dB, comma-separated (default 20,15)")
    parser.add_argument("--sets", default="dev,heldout,heldout2,heldout3,heldout4,heldout5",
                        help="matching: comma-separated sets (dev, heldout, ..., heldout5; "
                             "numbers: a dev set for number slots)")
    parser.add_argument("--rescore", default=ListenSection().rescore_max_drop,
                        type=lambda v: None if v == "off" else float(v),
                        help="matching: listen.rescore_max_drop, or off (default: listen's default)")
    parser.add_argument("--dump", type=Path, help="matching: save each utterance's command audio and transcripts here")
    parser.add_argument("--repeats", type=int, default=1, help="latency: runs per voice")
    parser.add_argument("--cloud", default=None,
                        help="matching: escalate unsure commands to `edge-asr serve` with this model (e.g. base)")
    parser.add_argument("--json", type=Path, help="also write all numbers here")
    args = parser.parse_args()
    import tempfile

    sections = args.sections.split(",")
    transcribers = make_transcribers(args) if set(sections) - {"cpu"} else None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sections:
            started = time.monotonic()
            if name == "recall":
                out[name] = section_recall(args, transcribers.wake_check)
            elif name == "cpu":
                out[name] = section_cpu(args, None)
            elif name == "latency":
                out[name] = section_latency(args, transcribers, Path(tmp))
            elif name == "matching":
                out[name] = section_matching(args, transcribers, Path(tmp))
            else:
                parser.error(f"unknown section {name}")
            print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
            if args.json:  # after every section: a long run keeps what it measured
                args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
