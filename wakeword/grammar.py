"""Command phrases with slots, matched to transcripts in a way that tolerates recognition errors.

Phrase syntax: plain words, `[optional words]`, and slots: `{room}` (free text, 1-6 words),
`{minutes:int}` (digits or number words), `{state:on|off}` (one of the listed words or phrases).

Matching is an alignment of phrase elements to transcript words (dynamic programming, like an edit
distance): a literal word costs 1 - similarity when it is misheard ("lights" vs "light"), 1 when it
is missing or when an extra word appears; extra words before or after the command cost half. The score is
1 - cost / elements, so "turn on the kitchen lights" scores 1.0 and small slips stay near it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|[^\s\[\]{}]+")
_SLOT = re.compile(r"^\{([A-Za-z_]\w*)(?::(.+))?\}$")
_INF = float("inf")
MAX_TEXT_SLOT_WORDS = 6
_MIN_WORD_SIMILARITY = 0.5  # below this a heard word is simply a different word (one error)
_EDGE_EXTRA_COST = 0.5  # extra words before/after the command ("uh", a wake-word remnant, "please")
_FILLERS = frozenset({"please", "uh", "um", "hey", "oh", "okay", "ok", "now", "so"})
_ARTICLES = frozenset({"a", "an", "the"})  # recognizers swap these freely
_INDEFINITE = frozenset({"a", "an"})
_EMPTY_TEXT_COST = 0.99  # a free-text slot that heard nothing: just under a missed phrase word (1.0)


class PhraseError(ValueError):
    """A command phrase that cannot be parsed (the config layer names the key)."""


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation; "what's" -> "whats", "twenty-five" -> "twenty five"."""
    text = text.lower().replace("-", " ").replace("'", "").replace("’", "")
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    return re.sub(r"[^a-z0-9 ]+", " ", text).split()


# --- numbers -------------------------------------------------------------------------------------

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
         if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1000}


def parse_number(words: list[str] | tuple[str, ...]) -> int | None:
    """"25", "twenty five", "a hundred and five" -> int; None if the words are not one number. Whisper
    sometimes writes a number in pieces, as it was said: "20 1" (twenty one), "300 and 50" (three hundred and
    fifty); pieces that join as spoken numbers do are one number."""
    pieces = [int(w) if w.isdigit() else w for w in words]
    if pieces and all(isinstance(v, int) or (v == "and" and 0 < i < len(pieces) - 1
                                             and isinstance(pieces[i - 1], int) and pieces[i - 1] >= 100)
                      for i, v in enumerate(pieces)):
        values = [v for v in pieces if v != "and"]
        joined = all(_joins(a, b) for a, b in zip(values, values[1:]))
        return sum(values) if joined else None
    total, current, seen = 0, 0, False
    for i, word in enumerate(words):
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES:
            current = max(current, 1) * _SCALES[word]
            if _SCALES[word] == 1000:
                total, current = total + current, 0
        elif word in ("a", "an") and i + 1 < len(words) and words[i + 1] in _SCALES:
            continue
        elif word == "and" and seen and i + 1 < len(words):
            continue
        else:
            return None
        seen = True
    return total + current if seen else None


def _joins(first: int, then: int) -> bool:
    """Does `then` continue `first` as spoken numbers do: tens then a digit (20 1), hundreds or thousands then
    something smaller than their place (300 50, 2000 5)?"""
    if first in range(20, 100, 10):
        return then in range(1, 10)
    place = 1000 if first % 1000 == 0 else 100
    return first >= 100 and first % place == 0 and 0 < then < place


# --- phrases -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Element:
    kind: str  # "word", "text", "int", "choice"
    value: str = ""  # the word, or the slot name
    optional: bool = False
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (canonical, normalized words)


@dataclass
class Phrase:
    text: str
    elements: list[Element]

    @property
    def slots(self) -> list[str]:
        return [e.value for e in self.elements if e.kind != "word"]

    @property
    def weight(self) -> int:
        return sum(1 for e in self.elements if not e.optional)

    @property
    def ends_open(self) -> bool:
        """Whether more words could still belong to the phrase once it matched: it ends in a number or free
        text ("...for twenty" may go on "...five"), not in a fixed word or a choice."""
        required = [e for e in self.elements if not e.optional]
        return bool(required) and required[-1].kind in ("int", "text")


def parse_phrase(text: str) -> Phrase:
    if text.count("{") != text.count("}") or text.count("[") != text.count("]"):
        raise PhraseError(f"unbalanced brackets in {text!r}")
    elements: list[Element] = []
    for token in _TOKEN.findall(text):
        if token.startswith("{"):
            elements.append(_parse_slot(token, text))
        elif token.startswith("["):
            elements += [Element("word", w, optional=True) for w in normalize_words(token[1:-1])]
        else:
            elements += [Element("word", w) for w in normalize_words(token)]
    names = [e.value for e in elements if e.kind != "word"]
    if len(names) != len(set(names)):
        raise PhraseError(f"a slot name is used twice in {text!r}")
    if not elements:
        raise PhraseError(f"empty phrase {text!r}")
    return Phrase(text, elements)


def _parse_slot(token: str, phrase: str) -> Element:
    m = _SLOT.match(token)
    if not m:
        raise PhraseError(f"bad slot {token} in {phrase!r}: use {{name}}, {{name:int}} or {{name:a|b}}")
    name, kind = m.group(1), (m.group(2) or "").strip()
    if kind == "":
        return Element("text", name)
    if kind == "int":
        return Element("int", name)
    options = [o.strip() for o in kind.split("|")]
    if len(options) < 2 or not all(normalize_words(o) for o in options):
        raise PhraseError(f"bad slot {token} in {phrase!r}: a choice needs two or more options, "
                          "like {state:on|off}")
    return Element("choice", name, choices=tuple((o, tuple(normalize_words(o))) for o in options))


# --- matching ------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def word_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if a in _ARTICLES and b in _ARTICLES:
        return 0.75
    return SequenceMatcher(None, a, b).ratio()


def _literal_cost(heard: str, expected: str) -> float:
    """A misheard word costs less the more it resembles the phrase word; a different word costs 1."""
    sim = word_similarity(heard, expected)
    return 1.0 - sim if sim >= _MIN_WORD_SIMILARITY else 1.0


@lru_cache(maxsize=4096)
def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / the longer length: unlike SequenceMatcher's ratio, a short word that
    happens to appear letter by letter inside a long one ("the" in "kitchen": ratio 0.6) stays far from it."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(1, len(a), len(b))


def _choice_cost(heard: tuple[str, ...], element: Element) -> tuple[float, str]:
    best = (_INF, "")
    for canonical, words in element.choices:
        if abs(len(words) - len(heard)) > 1:
            continue
        # Snapping to an option picks the action's argument, so both measures must agree it was heard:
        # "turn off the memory lights" must not become the kitchen (via "the"), but be no match.
        heard_text, option = " ".join(heard), " ".join(words)
        sim = min(word_similarity(heard_text, option), edit_similarity(heard_text, option))
        if sim >= _MIN_WORD_SIMILARITY and 1.0 - sim < best[0]:
            best = (1.0 - sim, canonical)
    return best


def _span_options(element: Element, words: list[str], j: int):
    """(words consumed, cost, slot value) for matching `element` at transcript position j."""
    n = len(words)
    if element.kind == "word":
        if j < n:
            yield 1, _literal_cost(words[j], element.value), None
        if j + 1 < n:  # one phrase word heard as two ("what's" as "what is")
            sim = word_similarity(words[j] + words[j + 1], element.value)
            if sim >= _MIN_WORD_SIMILARITY:
                yield 2, 1.1 - sim, None
        return
    if element.kind == "text":
        # Nothing heard for it: a parse that lets the slot take a phrase word instead ("add to the shopping
        # list" as item "add", the word "add" missing) costs a missed word; this one a little less, and
        # the match says the slot is missing: a command without its free text is not that command.
        yield 0, _EMPTY_TEXT_COST, None
        for k in range(1, min(MAX_TEXT_SLOT_WORDS, n - j) + 1):
            yield k, 0.01 * (k - 1), _text_value(words[j:j + k])  # tiny cost: prefer shorter on ties
        return
    if element.kind == "int":
        for k in range(1, min(5, n - j) + 1):
            value = parse_number(words[j:j + k])
            if value is not None:
                yield k, 0.0, value
        return
    longest = max(len(w) for _, w in element.choices)
    for k in range(1, min(longest + 1, n - j) + 1):
        cost, value = _choice_cost(tuple(words[j:j + k]), element)
        if cost < _INF:
            yield k, cost, value


def _text_value(words: list[str]) -> str:
    """A free-text slot's value without a leading "a"/"an": "add a milk" gives "milk" (the item, not how it
    was said; recognizers also insert one that was never spoken). "the" stays: it starts names (The Who)."""
    return " ".join(words[1:] if len(words) > 1 and words[0] in _INDEFINITE else words)


def _extra_word_cost(word: str, at_edge: bool) -> float:
    if word in _FILLERS:
        return 0.3
    return _EDGE_EXTRA_COST if at_edge else 1.0


@dataclass
class PhraseMatch:
    score: float
    slots: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # free-text slots that heard nothing: then it is not this command


def match_phrase(phrase: Phrase, words: list[str]) -> PhraseMatch | None:
    """How well `words` say `phrase` (None: they can't), with the slot values; see PhraseMatch.missing."""
    elements, n, m = phrase.elements, len(words), len(phrase.elements)
    cost = [[_INF] * (n + 1) for _ in range(m + 1)]
    back: list[list[tuple | None]] = [[None] * (n + 1) for _ in range(m + 1)]
    cost[0][0] = 0.0
    for i in range(m + 1):
        for j in range(n + 1):
            here = cost[i][j]
            if here == _INF:
                continue
            if j < n:  # an extra transcript word
                c = here + _extra_word_cost(words[j], at_edge=i in (0, m))
                if c < cost[i][j + 1]:
                    cost[i][j + 1], back[i][j + 1] = c, (i, j, None)
            if i == m:
                continue
            element = elements[i]
            if element.kind == "word":  # a phrase word that was not heard
                c = here + (0.0 if element.optional else 1.0)
                if c < cost[i + 1][j]:
                    cost[i + 1][j], back[i + 1][j] = c, (i, j, None)
            for k, step, value in _span_options(element, words, j):
                c = here + step
                if c < cost[i + 1][j + k]:
                    cost[i + 1][j + k], back[i + 1][j + k] = c, (i, j, value)
    if cost[m][n] == _INF:
        return None
    slots: dict[str, Any] = {}
    i, j = m, n
    while (i, j) != (0, 0):
        pi, pj, value = back[i][j]
        if pi != i and elements[pi].kind != "word" and pj != j:
            slots[elements[pi].value] = value
        i, j = pi, pj
    missing = tuple(e.value for e in elements if e.kind == "text" and e.value not in slots)
    score = max(0.0, 1.0 - cost[m][n] / max(1, phrase.weight))
    return PhraseMatch(round(score, 3), dict(reversed(list(slots.items()))), missing)


@dataclass
class Command:
    name: str
    phrases: list[Phrase]
    action: Any = None  # what to do; the grammar does not care


@dataclass
class CommandMatch:
    command: Command
    phrase: Phrase
    score: float
    slots: dict[str, Any]
    rescored: str | None = None  # the grammar sentence acoustic rescoring chose instead of the transcript
    missing: tuple[str, ...] = ()  # free-text slots that heard nothing ("add to the shopping list")


@dataclass
class Candidate:
    """A sentence of the grammar: what a command would be if these words were said."""

    command: Command
    phrase: Phrase
    slots: dict[str, Any]
    text: str  # lower case, spelled as the phrase spells it ("what's the weather like")


def _expand(phrase: Phrase, numbers: list[int], text_slots: dict[str, Any]):
    """(words, slots) for every way of saying `phrase`; a phrase with a slot that has no value yields none."""
    yield from _expand_tokens(_TOKEN.findall(phrase.text), numbers, text_slots)


def _expand_tokens(tokens: list[str], numbers: list[int], text_slots: dict[str, Any]):
    options: list[list[tuple[list[str], dict[str, Any]]]] = []
    for token in tokens:
        if token.startswith("["):
            options.append([(token[1:-1].split(), {}), ([], {})])
            continue
        m = _SLOT.match(token)
        if not m:
            options.append([([token], {})])
            continue
        name, kind = m.group(1), (m.group(2) or "").strip()
        if kind == "":
            value = text_slots.get(name)
            if not value:
                return
            options.append([(value.split(), {name: value})])
        elif kind == "int":
            if not numbers:
                return
            options.append([(w, {name: n}) for n in numbers for w in ([str(n)], number_words(n).split())])
        else:
            options.append([(o.strip().split(), {name: o.strip()}) for o in kind.split("|")])
    for combination in itertools.product(*options):
        spoken = [w for words, _ in combination for w in words]
        if spoken:
            yield spoken, {k: v for _, slots in combination for k, v in slots.items()}


def _slot_kind(token: str) -> str | None:
    """"int", "" (free text) or the choices of a slot token; None for words and optional words."""
    m = _SLOT.match(token)
    return (m.group(2) or "").strip() if m else None


def number_words(n: int) -> str:
    """25 -> "twenty five" (0-999; larger numbers as digits)."""
    if not 0 <= n < 1000:
        return str(n)
    units = list(_UNITS)
    tens = {v: w for w, v in _TENS.items()}
    parts = []
    if n >= 100:
        parts += [units[n // 100], "hundred"]
        n %= 100
        if not n:
            return " ".join(parts)
    if n < 20:
        parts.append(units[n])
    else:
        parts.append(tens[n - n % 10])
        if n % 10:
            parts.append(units[n % 10])
    return " ".join(parts)


class Grammar:
    """Picks the command whose phrase best matches a transcript."""

    def __init__(self, commands: list[Command], min_score: float = 0.6) -> None:
        self.commands = commands
        self.min_score = min_score

    def best(self, text: str) -> CommandMatch | None:
        """The best match, even if it scores below `min_score` or misses its free text (None when nothing
        aligns at all); a whole match before one that misses free text and scores the same. A phrase that
        fits better without its free text than any phrase fits whole is what was said ("Add to my to do
        list" is the to-do phrase, not the shopping item "to my"), so `match` then finds no command."""
        words = normalize_words(text)
        best: CommandMatch | None = None
        for command in self.commands:
            for phrase in command.phrases:
                m = match_phrase(phrase, words)
                if m is not None and (best is None or (m.score, not m.missing) > (best.score, not best.missing)):
                    best = CommandMatch(command, phrase, m.score, m.slots, missing=m.missing)
        return best

    def match(self, text: str) -> CommandMatch | None:
        best = self.best(text)
        return best if best is not None and best.score >= self.min_score and not best.missing else None

    def incomplete(self, text: str) -> CommandMatch | None:
        """The phrase a transcript is, said without its free text ("Add to my to do list"), or None."""
        best = self.best(text)
        return best if best is not None and best.score >= self.min_score and best.missing else None

    def candidates(self, text: str, limit: int = 12, numbers: tuple[int, ...] = ()) -> list[Candidate]:
        """The command sentences of this grammar nearest to a transcript, for the transcriber to score against
        the audio: every phrase with its optional words in or out and each choice slot as each of its
        options; a number slot holds the numbers heard (as digits and as words) and `numbers` (what the audio
        suggests where the transcript has none: see `number_contexts`), a free-text slot what matching the
        phrase put there. Ranked by how close their letters are to the transcript's (so the list stays
        short), the nearest `limit` kept."""
        words = normalize_words(text)
        heard = " ".join(words)
        numbers = sorted({v for i in range(len(words)) for k in range(1, 5)
                          if (v := parse_number(words[i:i + k])) is not None} | set(numbers))
        found: dict[str, Candidate] = {}
        for command in self.commands:
            for phrase in command.phrases:
                matched = match_phrase(phrase, words) if any(e.kind == "text" for e in phrase.elements) else None
                for spoken, slots in _expand(phrase, numbers, matched.slots if matched else {}):
                    sentence = " ".join(spoken)
                    if sentence not in found:
                        found[sentence] = Candidate(command, phrase, slots, sentence)
        ranked = sorted(found.values(), key=lambda c: -SequenceMatcher(
            None, heard, " ".join(normalize_words(c.text))).ratio())
        return ranked[:limit]

    def number_contexts(self) -> list[str]:
        """What is said before a number slot ("set a timer for", "start a", "wake me up at"): each phrase's words
        up to its first number slot, optional words in or out, each choice as each option. The transcriber
        is asked which number follows each (a number it did not hear as one: "seven o'clock" written "a scene
        with a cloth"). Phrases with free text before the number are left out: nothing fixes those words."""
        contexts: list[str] = []
        for command in self.commands:
            for phrase in command.phrases:
                tokens = _TOKEN.findall(phrase.text)
                kinds = [_slot_kind(t) for t in tokens]
                if "int" not in kinds or "" in kinds[:kinds.index("int")]:
                    continue
                before = tokens[:kinds.index("int")]
                said = [" ".join(spoken) for spoken, _ in _expand_tokens(before, [], {})]
                if all(t.startswith("[") for t in before):  # the number may come first
                    said.append("")
                contexts += [c for c in dict.fromkeys(said) if c not in contexts]
        return contexts

    def prompt(self) -> str:
        """Text to prime the transcriber with the command vocabulary: one example sentence per command, then
        the other options of every choice slot ("Turn on the kitchen lights. ... Bedroom, garage.")."""
        sentences = [example_sentence(c.phrases[0]) for c in self.commands if c.phrases]
        options: list[str] = []
        for command in self.commands:
            for phrase in command.phrases:
                for e in phrase.elements:
                    options += [o for o, _ in e.choices[1:] if o not in options]
        if options:
            sentences.append(", ".join(options).capitalize() + ".")
        return " ".join(sentences)


def example_sentence(phrase: Phrase) -> str:
    """ "turn {state:on|off} the {room} lights" -> "Turn on the lights." (a choice as its first option,
    numbers and free text left out), in the phrase's own spelling.

    A number is left out rather than given an example value: primed with "to 5 degrees", tiny.en (int8)
    wrote "seventy" as "7" for 2 of 5 TTS voices at 15 dB SNR, without the example for 1. Free text left out
    can prime the transcriber to leave it out too ("add a banana to the shopping list" heard as "Add to the
    shopping list": no command, as a match needs its free text). Marking it "..." was tried: the
    transcriber then copied "..." in place of an item it could not hear, and rescoring matched another
    command to that audio, a worse failure than no command."""

    def slot(m: re.Match) -> str:
        kind = (m.group(2) or "").strip()
        return "" if kind in ("", "int") else kind.split("|")[0].strip()

    text = re.sub(r"\{([A-Za-z_]\w*)(?::([^}]*))?\}", slot, phrase.text)
    text = " ".join(text.replace("[", "").replace("]", "").split())
    return text[:1].upper() + text[1:] + "." if text else ""


def find_phrase(text: str, phrase: str, min_similarity: float = 0.7) -> tuple[float, int] | None:
    """Where a spoken phrase (a wake word) occurs in a transcript, tolerantly.

    Returns (similarity, index of the first word after it); compares letters with spaces removed so
    "hey jarvis" matches "Hey, Jarvis" and "heyjarvis", and "Alexa" matches "Alexa's".
    """
    words = normalize_words(text)
    target = "".join(normalize_words(phrase))
    n_target = max(1, len(normalize_words(phrase)))
    best: tuple[float, int] | None = None
    for i in range(len(words)):
        for k in range(max(1, n_target - 1), n_target + 2):
            if i + k > len(words):
                break
            sim = word_similarity("".join(words[i:i + k]), target)
            if sim >= min_similarity and (best is None or sim > best[0]):
                best = (sim, i + k)
    return best
