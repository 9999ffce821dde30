"""Turn a validated `listen:` section into runnable parts, checking what types alone cannot."""

from __future__ import annotations

from dataclasses import dataclass

from edge_asr.errors import ConfigError, EdgeAsrError
from wakeword.actions import BUILTIN_FIELDS, Action, EmitAction, PostAction, RunAction, placeholders
from wakeword.config import ActionConfig, ListenSection
from wakeword.detector import WakeWordSpec
from wakeword.grammar import Command, Grammar, PhraseError, parse_phrase
from wakeword.models import wakeword_display_name, wakeword_model_path

SECTION = "listen"


@dataclass
class WakeWordPlan:
    spec: WakeWordSpec  # spec.accept_threshold: at or above, no second stage (None: no second stage)
    phrases: list[str]  # what the transcript of the wake word should contain


@dataclass
class ListenPlan:
    """Everything `listen` needs from the config, checked (cheap: no models are loaded)."""

    section: ListenSection
    wakewords: list[WakeWordPlan]
    grammar: Grammar


def plan_listen(section: ListenSection, source: str) -> ListenPlan:
    specs = build_wakewords(section, source)
    wakewords = [WakeWordPlan(spec, wake_phrases(cfg.model, cfg.phrases))
                 for spec, cfg in zip(specs, section.wakewords, strict=True)]
    return ListenPlan(section, wakewords, build_grammar(section, source))


def build_grammar(section: ListenSection, source: str) -> Grammar:
    commands, names = [], set()
    for i, cfg in enumerate(section.commands):
        key = f"{SECTION}.commands[{i}]"
        if cfg.name in names:
            raise ConfigError(f"{source}: '{key}.name' repeats the command name {cfg.name!r}")
        names.add(cfg.name)
        if not cfg.phrases:
            raise ConfigError(f"{source}: '{key}.phrases' needs at least one phrase")
        phrases = []
        for j, text in enumerate(cfg.phrases):
            try:
                phrases.append(parse_phrase(text))
            except PhraseError as e:
                raise ConfigError(f"{source}: '{key}.phrases[{j}]': {e}") from None
        common_slots = set.intersection(*(set(p.slots) for p in phrases))
        action = build_action(cfg.action, f"{key}.action", source, common_slots | set(BUILTIN_FIELDS))
        commands.append(Command(cfg.name, phrases, action))
    _check_range(section.min_match_score, 0.0, 1.0, f"{SECTION}.min_match_score", source)
    _check_range(section.beam_size, 1, 16, f"{SECTION}.beam_size", source)
    if section.rescore_max_drop is not None and section.rescore_max_drop < 0:
        raise ConfigError(f"{source}: '{SECTION}.rescore_max_drop' must be 0 or more (or null: off), "
                          f"got {section.rescore_max_drop!r}")
    return Grammar(commands, min_score=section.min_match_score)


def build_action(cfg: ActionConfig, key: str, source: str, available: set[str]) -> Action:
    if cfg.run is not None and cfg.post is not None:
        raise ConfigError(f"{source}: '{key}' has both 'run' and 'post': give one")
    for field_name, template in (("run", cfg.run), ("env", cfg.env), ("post", cfg.post), ("json", cfg.json),
                                 ("headers", cfg.headers)):
        unknown = sorted(placeholders(template) - available)
        if unknown:
            raise ConfigError(f"{source}: '{key}.{field_name}' uses {{{unknown[0]}}}, which is not a slot of "
                              f"every phrase of this command (available: {', '.join(sorted(available))})")
    if cfg.timeout_s <= 0:
        raise ConfigError(f"{source}: '{key}.timeout_s' must be positive")
    if cfg.run is not None:
        if not cfg.run:
            raise ConfigError(f"{source}: '{key}.run' needs a program: a list like [/usr/bin/program, arg]")
        return RunAction(list(cfg.run), dict(cfg.env), cfg.timeout_s)
    if cfg.post is not None:
        if not cfg.post.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: '{key}.post' must be an http:// or https:// URL, got {cfg.post!r}")
        return PostAction(cfg.post, cfg.json, dict(cfg.headers), cfg.timeout_s)
    if cfg.json is not None or cfg.env or cfg.headers:
        raise ConfigError(f"{source}: '{key}' sets json/env/headers without 'run' or 'post'")
    return EmitAction()


def build_wakewords(section: ListenSection, source: str) -> list[WakeWordSpec]:
    if not section.wakewords:
        raise ConfigError(f"{source}: '{SECTION}.wakewords' needs at least one wake word")
    specs = []
    for i, cfg in enumerate(section.wakewords):
        key = f"{SECTION}.wakewords[{i}]"
        try:
            wakeword_model_path(cfg.model)
        except EdgeAsrError as e:
            raise ConfigError(f"{source}: '{key}.model': {e}") from None
        _check_range(cfg.threshold, 0.0, 1.0, f"{key}.threshold", source)
        _check_range(cfg.accept_threshold, 0.0, 1.01, f"{key}.accept_threshold", source)
        if cfg.patience < 1:
            raise ConfigError(f"{source}: '{key}.patience' must be 1 or more")
        accept = cfg.accept_threshold if section.verifier != "none" else None
        specs.append(WakeWordSpec(cfg.model, cfg.threshold, cfg.patience, cfg.refractory_s, accept))
    names = [wakeword_display_name(c.model) for c in section.wakewords]
    if len(names) != len(set(names)):
        raise ConfigError(f"{source}: '{SECTION}.wakewords' lists the same wake word twice")
    if section.vad_gate is not None:
        _check_range(section.vad_gate, 0.0, 1.0, f"{SECTION}.vad_gate", source)
    capture = section.capture
    for name in ("pre_roll_s", "start_timeout_s", "trailing_silence_s", "max_command_s"):
        if getattr(capture, name) <= 0:
            raise ConfigError(f"{source}: '{SECTION}.capture.{name}' must be positive")
    _check_range(capture.vad_threshold, 0.0, 1.0, f"{SECTION}.capture.vad_threshold", source)
    return specs


def wake_phrases(model: str, phrases: list[str]) -> list[str]:
    """What the verifier listens for: the configured phrases, else the spoken model name ("hey jarvis")."""
    return list(phrases) or [wakeword_display_name(model).replace("_", " ")]


def _check_range(value: float, low: float, high: float, key: str, source: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{source}: '{key}' must be between {low:g} and {high:g}, got {value!r}")
