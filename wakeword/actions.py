"""What a recognized command does: run a program, POST JSON to a URL, or only emit the event.

Slot values are substituted into argv items, environment values and JSON strings as data: a program is
always started from an argv list (never through a shell), so a transcript cannot inject commands.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
BUILTIN_FIELDS = ("command", "text")  # always available to templates besides the slots


class ActionError(Exception):
    """The action ran and failed; the listener reports it and keeps listening."""


@dataclass
class CommandContext:
    command: str
    text: str
    slots: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"command": self.command, "text": self.text, **self.slots}


def placeholders(template: Any) -> set[str]:
    """Every {name} used in a template (strings, lists and mappings, recursively)."""
    if isinstance(template, str):
        return set(_PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(placeholders(v) for v in template)) if template else set()
    return set()


def fill(template: Any, values: dict[str, Any]) -> Any:
    """Substitute {name}s. A string that is exactly one placeholder keeps the value's type (an int stays
    an int in JSON); inside longer strings values are inserted as text. Values are never re-expanded."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


class EmitAction:
    kind = "emit"

    def __call__(self, context: CommandContext) -> str | None:
        return None


@dataclass
class RunAction:
    argv: list[str]
    env: dict[str, str]
    timeout_s: float = 10.0
    kind = "run"

    def __call__(self, context: CommandContext) -> str | None:
        values = context.fields()
        argv = [str(fill(a, values)) for a in self.argv]
        env = dict(os.environ)
        env.update({"EDGE_ASR_COMMAND": context.command, "EDGE_ASR_TEXT": context.text})
        env.update({f"EDGE_ASR_SLOT_{k.upper()}": str(v) for k, v in context.slots.items()})
        env.update({k: str(fill(v, values)) for k, v in self.env.items()})
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=self.timeout_s, shell=False)
        except FileNotFoundError:
            raise ActionError(f"program not found: {argv[0]}") from None
        except PermissionError:
            raise ActionError(f"program not executable: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise ActionError(f"{argv[0]} did not finish within {self.timeout_s:g} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [""])[-1][:200]
            reason = f": {last}" if last else ""
            raise ActionError(f"{argv[0]} exited with status {done.returncode}{reason}")
        return None


@dataclass
class PostAction:
    url: str
    body: Any = None
    headers: dict[str, str] | None = None
    timeout_s: float = 10.0
    kind = "post"

    def __call__(self, context: CommandContext) -> str | None:
        import httpx

        values = context.fields()
        url = str(fill(self.url, values))
        body = fill(self.body, values) if self.body is not None else {
            "command": context.command, "text": context.text, "slots": context.slots}
        try:
            headers = fill(self.headers or {}, values)
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as e:
            raise ActionError(f"POST {url} failed: {type(e).__name__}: {e}") from None
        if response.status_code >= 400:
            raise ActionError(f"POST {url} answered HTTP {response.status_code}")
        return f"HTTP {response.status_code}"


Action = EmitAction | RunAction | PostAction
