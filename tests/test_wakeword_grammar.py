"""Command phrases with slots, matched tolerantly against what a recognizer writes."""

import pytest

from wakeword.grammar import (
    Command,
    Grammar,
    PhraseError,
    example_sentence,
    find_phrase,
    parse_number,
    parse_phrase,
)
from wakeword.listener import collapse_repeats, strip_wake_phrase


@pytest.fixture(scope="module")
def grammar():
    def command(name, *phrases):
        return Command(name, [parse_phrase(p) for p in phrases])

    return Grammar([
        command("lights", "turn {state:on|off} the {room} lights", "switch {state:on|off} the {room} lights"),
        command("timer", "set a timer for {minutes:int} minutes"),
        command("weather", "what's the weather [like] [today]"),
        command("volume", "volume {level:up|down|all the way up}"),
    ])


@pytest.mark.parametrize("text, command, slots", [
    ("Turn on the kitchen lights.", "lights", {"state": "on", "room": "kitchen"}),
    ("turn off the living room lights", "lights", {"state": "off", "room": "living room"}),
    ("Switch off the bedroom light", "lights", {"state": "off", "room": "bedroom"}),  # "light": misheard
    ("turn of the kitchen lights", "lights", {"state": "off", "room": "kitchen"}),  # "of" for "off"
    ("please turn on the garage lights", "lights", {"state": "on", "room": "garage"}),
    ("Set a timer for 5 minutes.", "timer", {"minutes": 5}),
    ("set a timer for twenty-five minutes", "timer", {"minutes": 25}),
    ("set the timer for ten minute", "timer", {"minutes": 10}),
    ("What's the weather like today?", "weather", {}),
    ("what is the weather", "weather", {}),
    ("Volume all the way up!", "volume", {"level": "all the way up"}),
])
def test_matches_with_slots(grammar, text, command, slots):
    match = grammar.match(text)
    assert match is not None, text
    assert (match.command.name, match.slots) == (command, slots)
    assert 0.6 <= match.score <= 1.0


def test_exact_phrase_scores_one_and_slips_score_less(grammar):
    assert grammar.match("turn on the kitchen lights").score == 1.0
    assert grammar.match("turn on the kitchen light").score < 1.0


@pytest.mark.parametrize("text", ["", "hello there how are you", "play some music", "the the the",
                                  "set a timer for some minutes"])
def test_unrelated_speech_matches_nothing(grammar, text):
    assert grammar.match(text) is None


def test_numbers():
    assert parse_number(["a", "hundred", "and", "five"]) == 105
    assert parse_number(["two", "thousand", "twenty"]) == 2020
    assert parse_number(["90"]) == 90
    assert parse_number(["for"]) is None and parse_number(["five", "lights"]) is None
    # "twenty one" written "20 1" (heard so by tiny.en); "7 30" is not one number.
    assert parse_number(["20", "1"]) == 21 and parse_number(["7", "30"]) is None
    # "three hundred and fifty" written "300 and 50"; pieces join only as spoken numbers do.
    assert parse_number(["300", "and", "50"]) == 350 and parse_number(["2000", "5"]) == 2005
    assert parse_number(["2000", "300", "and", "50"]) == 2350
    for pieces in (["20", "15"], ["5", "5"], ["300", "300"], ["20", "and", "1"], ["and", "5"], ["300", "and"],
                   ["300", "and", "and", "50"]):
        assert parse_number(pieces) is None, pieces


def test_a_number_written_in_pieces_is_one_number():
    grammar = Grammar([Command("thermostat", [parse_phrase("set the temperature to {degrees:int} degrees")]),
                       Command("oven", [parse_phrase("preheat the oven to {degrees:int} degrees")])])
    match = grammar.match("Set the temperature to 20 1 degrees")
    assert match is not None and match.slots == {"degrees": 21} and match.score == 1.0
    match = grammar.match("Preheat the oven to 300 and 50 degrees")  # tiny.en's "three hundred and fifty"
    assert match is not None and match.slots == {"degrees": 350} and match.score == 1.0


@pytest.mark.parametrize("phrase", ["turn {state:on} the lights", "turn {on the lights", "set {x:int} {x}",
                                    "{bad name}", "   "])
def test_bad_phrases_are_rejected(phrase):
    with pytest.raises(PhraseError):
        parse_phrase(phrase)


def test_wake_phrase_is_found_and_stripped():
    assert find_phrase("Hey, Jarvis.", "hey jarvis")[0] == 1.0
    assert find_phrase("I like some.", "alexa") is None
    assert strip_wake_phrase("Alexa, turn on the kitchen lights.", ["alexa"]) == "turn on the kitchen lights"
    assert strip_wake_phrase("Hey Jarvis what's the weather", ["hey jarvis"]) == "what's the weather"
    assert strip_wake_phrase("turn on the lights", ["alexa"]) == "turn on the lights"


def test_prompt_primes_the_command_vocabulary(grammar):
    # No example number: it biased the transcriber towards it ("seventy" -> "7" after "5"); no free text.
    assert grammar.prompt() == ("Turn on the lights. Set a timer for minutes. "
                                "What's the weather like today. Volume up. Off, down, all the way up.")
    assert example_sentence(parse_phrase("take a note {text}")) == "Take a note."


def test_a_phrase_ending_in_a_number_or_free_text_is_open():
    assert parse_phrase("set a timer for {minutes:int} [minutes]").ends_open
    assert parse_phrase("take a note {text}").ends_open
    assert not parse_phrase("set a timer for {minutes:int} minutes").ends_open
    assert not parse_phrase("turn the volume {direction:up|down}").ends_open
    assert not parse_phrase("what's the weather [like] [today]").ends_open


def test_a_looping_transcript_collapses_to_its_first_sentence():
    looped = "Alexa. Turn off the lights. Turn off the lights. Turn off the"
    assert collapse_repeats(looped) == "Alexa. Turn off the lights."
    assert collapse_repeats("Set it to 2.5 degrees. OK.") == "Set it to 2.5 degrees. OK."


def test_a_short_word_does_not_snap_to_a_long_option():
    # "the" is spelled inside "kitchen": a misheard room must be no match, not the kitchen's lights.
    rooms = Grammar([Command("lights", [parse_phrase("turn {state:on|off} the {room:kitchen|bedroom} lights")])])
    assert rooms.match("Turn off the memory lights") is None
    assert rooms.match("Turn off the madroom lights").slots == {"state": "off", "room": "bedroom"}


def test_a_misheard_wake_word_before_a_short_command_is_dropped():
    # The capture holds the wake word; heard as "I like that." it would sink a 3-word command.
    from wakeword.commands import plan_listen
    from wakeword.config import CommandConfig, ListenSection
    from wakeword.listener import Listener
    from wakeword.verify import Heard

    section = ListenSection(commands=[CommandConfig("blinds", ["{action:open|close} the blinds"])])
    listener = Listener(plan_listen(section, "test"), lambda audio, prompt=None: Heard("", 0.0))
    text, match = listener._text_and_match(Heard("I like that. Close the blinds.", 0.9))
    assert text == "Close the blinds." and match.slots == {"action": "close"}
    text, match = listener._text_and_match(Heard("And next up, close the blinds.", 0.9))  # or as a clause
    assert text == "close the blinds." and match.slots == {"action": "close"}
    assert listener._text_and_match(Heard("Tell me a joke. About blinds.", 0.9))[1] is None


def test_candidates_expand_choices_optional_words_and_numbers_heard(grammar):
    texts = [c.text for c in grammar.candidates("what's the weather like", limit=100)]
    assert {"what's the weather", "what's the weather like", "what's the weather today",
            "what's the weather like today"} <= set(texts)
    assert {"volume up", "volume down", "volume all the way up"} <= set(texts)
    timers = [c for c in grammar.candidates("set a timer for twenty five minutes", limit=100)
              if c.command.name == "timer"]
    # The number heard, as digits and as words (and the numbers inside it: "five" is one too).
    assert {(c.text, c.slots["minutes"]) for c in timers} >= {
        ("set a timer for 25 minutes", 25), ("set a timer for twenty five minutes", 25)}


def test_candidates_fill_free_text_with_what_matching_heard_and_rank_by_closeness(grammar):
    best = grammar.candidates("Turn of the kitchen light.", limit=3)
    assert best[0].text == "turn off the kitchen lights" and best[0].slots == {"state": "off", "room": "kitchen"}
    assert len(best) == 3
    # No number heard: a number phrase has no candidate, unless the audio suggests numbers for it.
    assert not [c for c in grammar.candidates("set a timer", limit=100) if c.command.name == "timer"]
    suggested = [c for c in grammar.candidates("set a timer", limit=100, numbers=(7,)) if c.command.name == "timer"]
    assert {(c.text, c.slots["minutes"]) for c in suggested} == {
        ("set a timer for 7 minutes", 7), ("set a timer for seven minutes", 7)}
    # A free-text value is what matching put there: without a leading "a"/"an", with "the".
    g = Grammar([Command("shopping", [parse_phrase("add {item} to the shopping list")])])
    assert [c.slots for c in g.candidates("add a milk to the shopping list")] == [{"item": "milk"}]
    assert g.match("Add an apple to the shopping list.").slots == {"item": "apple"}
    assert g.match("add the who to the shopping list").slots == {"item": "the who"}
    assert g.match("add a to the shopping list").slots == {"item": "a"}  # nothing else heard: kept
    # Nothing heard for the free text: not that command (rather than the item "add", the word "add" missed),
    # but the closest, missing its item.
    assert g.match("Add to the shopping list.") is None and g.candidates("add to the shopping list") == []
    assert (g.best("Add to the shopping list.").command.name, g.best("add to the shopping list").missing) == (
        "shopping", ("item",))


def test_a_phrase_heard_without_its_free_text_is_no_other_command():
    # "Add to my to do list" fits the to-do phrase but for its task (0.86) better than it fits the shopping
    # phrase whole (the item "to my", "do" for "the", "shopping" missing: 0.67): no command, and which is missing.
    g = Grammar([Command("todo", [parse_phrase("add {task} to my to do list")]),
                 Command("shopping", [parse_phrase("add {item} to the shopping list")])])
    assert g.match("Add to my to do list.") is None
    assert g.incomplete("Add to my to do list.").command.name == "todo"
    assert g.match("add call mom to my to do list").slots == {"task": "call mom"}
    assert g.match("add milk to the shopping list").command.name == "shopping"
    assert g.incomplete("add milk to the shopping list") is None


def test_number_contexts_are_the_words_before_each_number_slot():
    g = Grammar([
        Command("timer", [parse_phrase("set a timer for {minutes:int} minutes"),
                          parse_phrase("start a {minutes:int} minute timer")]),
        Command("alarm", [parse_phrase("[please] {verb:wake me|get me} up at {hour:int} [o'clock]")]),
        Command("count", [parse_phrase("{n:int} push ups")]),
        Command("note", [parse_phrase("remind me to {task} in {minutes:int} minutes")]),  # free text first: out
        Command("lights", [parse_phrase("turn {state:on|off} the lights")]),
    ])
    assert g.number_contexts() == ["set a timer for", "start a", "please wake me up at", "please get me up at",
                                   "wake me up at", "get me up at", ""]


def test_number_words():
    from wakeword.grammar import number_words

    for n in (0, 7, 13, 20, 45, 100, 305, 999):
        assert parse_number(number_words(n).split()) == n
