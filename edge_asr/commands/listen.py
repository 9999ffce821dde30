"""`edge-asr listen`: wake word -> command -> action, from the microphone, a file or stdin.

Every event is printed as one JSON line on stdout (see wakeword/listener.py for the shapes).
"""

from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="edge-asr config; its 'listen:' section names wake words and commands")
    parser.add_argument("--input", metavar="FILE|-", default=None,
                        help="audio file (any format/rate) or - for raw 16 kHz mono s16le PCM on stdin; "
                             "default: the microphone")
    parser.add_argument("--wakeword", action="append", metavar="NAME",
                        help="wake word model: a bundled name (alexa, hey_jarvis, hey_mycroft, hey_rhasspy, "
                             "timer, weather) or an .onnx path; repeatable; replaces the config's wake words")
    parser.add_argument("--realtime", action="store_true",
                        help="pace a file at real-time speed, like a microphone")
    parser.add_argument("--threads", type=int, default=None,
                        help="transcriber threads (default: config, else 2)")
    parser.add_argument("--model", default=None,
                        help="transcriber model directory (default: config, else the built-in one)")
    parser.add_argument("--device", default=None, help="sounddevice input device (name or index)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print candidates the second stage rejected (wake_rejected events)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_asr.config import load_config
    from edge_asr.stream import MICROPHONE, open_stream
    from wakeword.commands import plan_listen
    from wakeword.config import WakeWordConfig

    config = load_config(args.config)
    source = args.config or "command line"
    section = config.listen
    if args.wakeword:
        section.wakewords = [WakeWordConfig(model=name) for name in args.wakeword]
    plan = plan_listen(section, source)  # config errors surface before models load
    cloud = _cloud_client(config, source, section)

    device = int(args.device) if args.device and args.device.isdigit() else args.device
    # Audio problems (no file, no microphone) also surface before the transcriber loads.
    with open_stream(args.input or MICROPHONE, realtime=args.realtime, device=device) as stream:
        from edge_asr import Transcriber
        from wakeword.listener import Listener
        from wakeword.verify import listen_transcribers

        threads = args.threads or config.transcribe.threads or 2
        transcriber = Transcriber(model=args.model or config.transcribe.model, threads=threads)
        transcribers = listen_transcribers(transcriber, section.language, section.fast_path, section.beam_size)
        transcribe = transcribers.wake_check
        verifiers = escalate = None
        if cloud is not None and section.escalate:
            from wakeword.verify import cloud_transcriber

            escalate = cloud_transcriber(cloud, section.language)
        if cloud is not None and section.verifier == "cloud":
            from wakeword.verify import CloudVerifier, TranscriptVerifier

            verifiers = {w.spec.name: CloudVerifier(cloud, w.phrases, TranscriptVerifier(transcribe, w.phrases),
                                                    section.language) for w in plan.wakewords}
        listener = Listener(plan, transcribe, verbose=args.verbose, verifiers=verifiers,
                            transcribe_command=transcribers.command,
                            command_retry=transcribers.command_retry, escalate=escalate)
        for event in listener.run(stream):
            print(json.dumps(event, ensure_ascii=False), flush=True)
    return 0


def _cloud_client(config, source: str, section):
    """The escalation endpoint's client (wake verification with `verifier: cloud`, unsure commands with
    `escalate`), or None when neither uses it."""
    from edge_asr.errors import ConfigError
    from edge_asr.escalation import EscalationPolicy

    if section.verifier != "cloud" and not (section.escalate and config.escalation.endpoint):
        return None
    policy = EscalationPolicy.from_config(config.escalation, source)
    if policy is None:
        raise ConfigError(f"{source}: 'listen.verifier' is cloud but 'escalation.endpoint' is not set")
    return policy.client
