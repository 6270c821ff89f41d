"""Writes this folder's labelled prompt pairs (nearmiss.jsonl, paraphrase.jsonl) from the templates and
vocabularies below, all written for this project (see README.md).

Each template is a pair of prompt patterns with slots; each slot is filled from a vocabulary with a
fixed seed, so the files are reproducible byte for byte. A near-miss template changes one thing that
changes the answer (who does what to whom, a direction, a negation, one technical term, a number); a
paraphrase template says the same thing another way (numbers in words, an abbreviation, a typo, a
different register). Every template belongs to one split, decided by a hash of its id: ``dev``
(tuned on) or ``heldout`` (never tuned on: the guard's rules and the threshold are chosen without
reading it, and its figures are reported as they come)::

    .venv/bin/python benchmarks/data/semantic/generate.py
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 13
PER_TEMPLATE = 10
HELDOUT_SHARE = 3  # one template in three is held out

# --- vocabularies ----------------------------------------------------------------------------------

PEOPLE = [
    ("landlord", "tenant"), ("employer", "employee"), ("patient", "doctor"), ("student", "teacher"),
    ("buyer", "seller"), ("customer", "bank"), ("contractor", "homeowner"), ("author", "publisher"),
    ("parent", "school"), ("driver", "insurer"), ("startup", "investor"), ("client", "lawyer"),
]  # fmt: skip
ANIMALS = [("cat", "dog"), ("fox", "rabbit"), ("owl", "mouse"), ("shark", "dolphin"), ("hawk", "snake")]
UNITS = [
    ("Celsius", "Fahrenheit"), ("miles", "kilometers"), ("pounds", "kilograms"), ("inches", "centimeters"),
    ("liters", "gallons"), ("euros", "dollars"), ("feet", "meters"), ("ounces", "grams"), ("yen", "pounds"),
]  # fmt: skip
SYSTEMS = [
    ("MySQL", "PostgreSQL"), ("Dropbox", "Google Drive"), ("Windows", "Linux"), ("Python 2", "Python 3"),
    ("Jenkins", "GitHub Actions"), ("Slack", "Teams"), ("Android", "iPhone"), ("Outlook", "Gmail"),
    ("Heroku", "AWS"), ("npm", "yarn"),
]  # fmt: skip
FORMATS = [("JSON", "YAML"), ("CSV", "Excel"), ("PDF", "Word"), ("Markdown", "HTML"), ("PNG", "JPEG"), ("XML", "JSON")]
LANGUAGES = [("English", "Spanish"), ("French", "German"), ("Italian", "Portuguese"), ("Japanese", "Korean")]
CITIES = [("London", "Paris"), ("Boston", "Chicago"), ("Madrid", "Lisbon"), ("Tokyo", "Osaka"), ("Delhi", "Mumbai")]
DOMAINS = [("http", "https"), ("www", "the bare domain"), ("the old page", "the new page")]
ACCOUNTS = [("checking", "savings"), ("PayPal", "my bank account"), ("my IRA", "my 401k"), ("Venmo", "Zelle")]
# Technical terms that a short change or a near spelling turns into another thing.
TERMS = [
    ("TCP", "UDP"), ("HTTP", "HTTPS"), ("IPv4", "IPv6"), ("IMAP", "POP3"), ("SSH", "SSL"), ("SQL", "NoSQL"),
    ("mg", "mcg"), ("kW", "kWh"), ("MB", "Mb"), ("mph", "km/h"), ("Gbps", "GBps"), ("mean", "median"),
    ("variance", "standard deviation"), ("t-test", "z-test"), ("Type 1", "Type 2"), ("mitosis", "meiosis"),
    ("affect", "effect"), ("stalactite", "stalagmite"), ("latitude", "longitude"), ("RAM", "ROM"),
    ("hypothyroidism", "hyperthyroidism"), ("precision", "recall"), ("ETF", "ETN"), ("Roth IRA", "traditional IRA"),
]  # fmt: skip
TERM_CONTEXTS = [
    "What is {x} used for?", "Explain {x} to a beginner.", "How is {x} measured?", "When should I use {x}?",
    "Give me an example of {x}.", "What are the risks of {x}?",
]  # fmt: skip
ACTIONS = [
    ("eat", "foods", "before a run"), ("take", "painkillers", "with alcohol"), ("plant", "vegetables", "in winter"),
    ("install", "plugins", "on a production server"), ("store", "medicines", "in the fridge"),
    ("feed", "fruits", "to a puppy"), ("wash", "fabrics", "in hot water"),
]  # fmt: skip
NUMBERS = [
    (2, "two"), (3, "three"), (4, "four"), (5, "five"), (6, "six"), (7, "seven"), (8, "eight"), (10, "ten"),
    (12, "twelve"), (15, "fifteen"), (20, "twenty"), (25, "twenty-five"), (30, "thirty"), (40, "forty"),
    (50, "fifty"), (100, "one hundred"),
]  # fmt: skip
FRACTIONS = [("1/2", "half a", "0.5"), ("1/4", "a quarter", "0.25"), ("3/4", "three quarters of a", "0.75")]
COUNTABLE = ["eggs", "apples", "push-ups", "steps", "cups of coffee", "hours of sleep", "slices of bread"]
MEASURED = ["cup of flour", "teaspoon of salt", "liter of water", "pound of beef", "mile"]
ABBREVIATIONS = [
    ("CA", "California"), ("TX", "Texas"), ("NY", "New York"), ("FL", "Florida"), ("WA", "Washington state"),
    ("the IRS", "the Internal Revenue Service"), ("the FDA", "the Food and Drug Administration"),
    ("the EPA", "the Environmental Protection Agency"), ("the CDC", "the Centers for Disease Control"),
    ("the UK", "the United Kingdom"), ("the EU", "the European Union"), ("the US", "the United States"),
]  # fmt: skip
TERM_ABBREVIATIONS = [
    ("ROI", "return on investment"), ("APR", "annual percentage rate"), ("ETF", "exchange-traded fund"),
    ("IPO", "initial public offering"), ("BP", "blood pressure"), ("UTI", "urinary tract infection"),
    ("ADHD", "attention deficit hyperactivity disorder"), ("MRI", "magnetic resonance imaging"),
    ("AI", "artificial intelligence"), ("OS", "operating system"), ("GDP", "gross domestic product"),
    ("CPU", "central processing unit"),
]  # fmt: skip
PLACE_QUESTIONS = [
    "What is the sales tax in {x}?", "How do I register a car in {x}?", "What is the minimum wage in {x}?",
    "How do I get a fishing license in {x}?",
]  # fmt: skip
AGENCY_QUESTIONS = ["How do I contact {x}?", "What does {x} do?", "Who runs {x}?"]
TERM_QUESTIONS = ["How is {x} calculated?", "What is a normal {x}?", "Explain {x} in simple terms."]
TOPICS = [
    "reset a forgotten password", "change a flat tire", "boil an egg", "write a cover letter",
    "back up my phone", "improve my credit score", "learn to swim", "clean a cast iron pan",
    "lower my electricity bill", "fall asleep faster", "remove a coffee stain", "train a puppy",
]  # fmt: skip
LONG_WORDS = [
    "password", "necessary", "beginning", "restaurant", "government", "definitely", "environment",
    "experience", "temperature", "vegetables", "business", "calendar", "separate", "tomorrow",
]  # fmt: skip

COMPANIES = [
    ("Apple", "Samsung"), ("Google", "Microsoft"), ("Amazon", "Walmart"), ("Netflix", "Disney"), ("Uber", "Lyft"),
    ("Tesla", "Toyota"), ("Nike", "Adidas"), ("Spotify", "Apple Music"),
]  # fmt: skip
TEAMS = [("Real Madrid", "Barcelona"), ("the Lakers", "the Celtics"), ("Brazil", "Germany"), ("India", "Australia")]
COUNTRIES = [
    ("Canada", "Mexico"), ("France", "Germany"), ("Japan", "China"), ("Spain", "Portugal"), ("Kenya", "Nigeria"),
    ("Sweden", "Norway"), ("Chile", "Peru"), ("Egypt", "Turkey"),
]  # fmt: skip
STEPS = [
    ("wash", "dry"), ("boil the pasta", "add the salt"), ("commit", "push"), ("stretch", "run"),
    ("apply primer", "paint"), ("season", "sear"), ("test", "deploy"), ("shampoo", "condition"),
]  # fmt: skip
CLAIMS = [
    "dogs eat grapes", "I store coffee beans in the freezer", "you charge a phone overnight",
    "I reuse a cooking oil", "you put metal in a microwave", "I run a laptop on a bed", "kids drink coffee",
]  # fmt: skip
PROTOCOL_TERMS = [
    ("TCP", "UDP"), ("SMTP", "IMAP"), ("REST", "GraphQL"), ("WPA2", "WPA3"), ("SFTP", "FTPS"), ("RAID 1", "RAID 5"),
    ("HDMI", "DisplayPort"), ("NAT", "PAT"),
]  # fmt: skip
DOSES = [("5 mg", "5 mcg"), ("10 ml", "10 l"), ("2 kg", "2 g"), ("100 mb", "100 gb"), ("1 TB", "1 Tb")]
ABBREVIATION_SENTENCES = [
    "My doctor says my {x} is too high, what should I do?", "Is a {x} test expensive without insurance?",
    "Can I deduct {x} fees on my taxes?",
]  # fmt: skip
MEDICAL_ABBREVIATIONS = [
    ("BP", "blood pressure"), ("BMI", "body mass index"), ("MRI", "magnetic resonance imaging"),
    ("CPI", "consumer price index"), ("HSA", "health savings account"), ("APR", "annual percentage rate"),
]  # fmt: skip
DOZENS = [("12", "a dozen", "twelve"), ("24", "two dozen", "twenty-four"), ("6", "half a dozen", "six")]
CURRENCIES = [("euros", "dollars"), ("pesos", "dollars"), ("rupees", "euros"), ("yen", "pounds")]
ORDINALS = [("1st", "first"), ("2nd", "second"), ("3rd", "third"), ("4th", "fourth"), ("10th", "tenth")]

Fill = Callable[[random.Random], tuple[str, str]]


def _pick(rng: random.Random, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    x, y = rng.choice(pairs)
    return (x, y) if rng.random() < 0.5 else (y, x)


def _swap(pattern: str, pairs: list[tuple[str, str]]) -> Fill:
    """The pattern with {x} and {y}, and the same with the two traded."""

    def fill(rng: random.Random) -> tuple[str, str]:
        x, y = _pick(rng, pairs)
        return pattern.format(x=x, y=y), pattern.format(x=y, y=x)

    return fill


def _swap_reworded(first: str, second: str, pairs: list[tuple[str, str]]) -> Fill:
    """Two wordings with {x} and {y}, the second with the two traded: a swap that also rewords."""

    def fill(rng: random.Random) -> tuple[str, str]:
        x, y = _pick(rng, pairs)
        return first.format(x=x, y=y), second.format(x=y, y=x)

    return fill


def _two(first: str, second: str, fill_slots: Callable[[random.Random], dict[str, str]]) -> Fill:
    def fill(rng: random.Random) -> tuple[str, str]:
        slots = fill_slots(rng)
        return first.format(**slots), second.format(**slots)

    return fill


def _term(rng: random.Random) -> tuple[str, str]:
    x, y = _pick(rng, TERMS)
    context = rng.choice(TERM_CONTEXTS)
    return context.format(x=x), context.format(x=y)


def _action(rng: random.Random) -> dict[str, str]:
    verb, things, when = rng.choice(ACTIONS)
    return {"verb": verb, "things": things, "when": when}


def _number(rng: random.Random) -> dict[str, str]:
    (n, word), (m, _) = rng.sample(NUMBERS, 2)
    return {"n": str(n), "word": word, "m": str(m), "thing": rng.choice(COUNTABLE)}


def _fraction(rng: random.Random) -> dict[str, str]:
    digits, words, decimal = rng.choice(FRACTIONS)
    return {"digits": digits, "words": words, "decimal": decimal, "thing": rng.choice(MEASURED)}


def _abbreviated(questions: list[str], pairs: list[tuple[str, str]]) -> Fill:
    def fill(rng: random.Random) -> tuple[str, str]:
        short, long = rng.choice(pairs)
        question = rng.choice(questions)
        first, second = question.format(x=short), question.format(x=long)
        return (first[0].upper() + first[1:], second[0].upper() + second[1:])

    return fill


def _typo(pattern: str) -> Fill:
    """The pattern with one long word, and the same with one keyboard slip in that word."""

    def fill(rng: random.Random) -> tuple[str, str]:
        word = rng.choice(LONG_WORDS)
        i = rng.randrange(1, len(word) - 2)
        slip = rng.choice(
            [word[:i] + word[i + 1] + word[i] + word[i + 2 :], word[:i] + word[i + 1 :], word[:i] + word[i] + word[i:]]
        )
        return pattern.format(w=word), pattern.format(w=slip)

    return fill


def _topic(first: str, second: str) -> Fill:
    return _two(first, second, lambda rng: {"t": rng.choice(TOPICS)})


def _choice(first: str, second: str, slot: str, words: list[str]) -> Fill:
    return _two(first, second, lambda rng: {slot: rng.choice(words)})


def _substitute(pattern: str, pairs: list[tuple[str, str]]) -> Fill:
    """The pattern with {x}, and the same with {x}'s confusable neighbour."""

    def fill(rng: random.Random) -> tuple[str, str]:
        x, y = _pick(rng, pairs)
        return pattern.format(x=x), pattern.format(x=y)

    return fill


def _dozen(first: str, second: str) -> Fill:
    def fill(rng: random.Random) -> tuple[str, str]:
        digits, phrase, word = rng.choice(DOZENS)
        thing = rng.choice(COUNTABLE)
        return first.format(n=digits, thing=thing), second.format(n=rng.choice([phrase, word]), thing=thing)

    return fill


def _ordinal(first: str, second: str) -> Fill:
    def fill(rng: random.Random) -> tuple[str, str]:
        short, long = rng.choice(ORDINALS)
        return first.format(o=short), second.format(o=long)

    return fill


# (id, kind, fill): the id names the template for the split; kinds are what the README tabulates.
NEAR_MISSES: list[tuple[str, str, Fill]] = [
    ("role-sue", "role", _swap("Can a {x} sue a {y}?", PEOPLE)),
    ("role-owe", "role", _swap("Does the {x} owe the {y} money if the contract ends early?", PEOPLE)),
    ("role-pay", "role", _swap("Should the {x} pay the {y} for the repairs?", PEOPLE)),
    ("role-notice", "role", _swap("How much notice must a {x} give a {y}?", PEOPLE)),
    ("role-eat", "role", _swap("Why does a {x} hunt a {y}?", ANIMALS)),
    ("role-faster", "role", _swap("Is a {x} faster than a {y}?", ANIMALS)),
    ("role-fire", "role", _swap("Can the {x} fire the {y} without a warning?", PEOPLE)),
    ("dir-convert", "direction", _swap("How do I convert {x} to {y}?", UNITS)),
    ("dir-formula", "direction", _swap("What is the formula to go from {x} to {y}?", UNITS)),
    ("dir-migrate", "direction", _swap("How do I migrate from {x} to {y}?", SYSTEMS)),
    ("dir-switch", "direction", _swap("Is it worth switching from {x} to {y}?", SYSTEMS)),
    ("dir-format", "direction", _swap("Write a script that turns {x} into {y}.", FORMATS)),
    ("dir-translate", "direction", _swap("Translate this sentence from {x} into {y}.", LANGUAGES)),
    ("dir-flight", "direction", _swap("How long is the flight from {x} to {y}?", CITIES)),
    ("dir-train", "direction", _swap("What is the cheapest train from {x} to {y}?", CITIES)),
    ("dir-redirect", "direction", _swap("How do I redirect {x} to {y} in nginx?", DOMAINS)),
    ("dir-transfer", "direction", _swap("How long does a transfer from {x} to {y} take?", ACCOUNTS)),
    ("dir-move", "direction", _swap("How do I move money from {x} to {y}?", ACCOUNTS)),
    (
        "dir-reword-convert",
        "direction",
        _swap_reworded("How do I convert {x} to {y}?", "Convert from {x} into {y}.", UNITS),
    ),
    (
        "dir-reword-migrate",
        "direction",
        _swap_reworded("How do I migrate from {x} to {y}?", "Steps to move to {y} from {x}", SYSTEMS),
    ),
    (
        "dir-reword-format",
        "direction",
        _swap_reworded("Convert this {x} file to {y}.", "How can I turn {x} into {y}?", FORMATS),
    ),
    (
        "dir-reword-travel",
        "direction",
        _swap_reworded("How far is it from {x} to {y} by car?", "Driving distance to {y} from {x}?", CITIES),
    ),
    ("term-context", "term", _term),
    ("term-versus", "term", _term),  # the same generator under a second id: more pairs, its own split
    (
        "neg-far",
        "negation",
        _two(
            "Which {things} should I, as a rule, {verb} {when}?",
            "Which {things} should I, as a rule, never {verb} {when}?",
            _action,
        ),
    ),
    (
        "neg-clause",
        "negation",
        _two(
            "Is it true that you can {verb} most {things} {when}?",
            "Is it true that you cannot {verb} most {things} {when}?",
            _action,
        ),
    ),
    (
        "neg-noapostrophe",
        "negation",
        _two("Why do people {verb} {things} {when}?", "Why dont people {verb} {things} {when}?", _action),
    ),
    ("num-digits", "number", _two("Is {n} {thing} a day too many?", "Is {m} {thing} a day too many?", _number)),
    (
        "num-words",
        "number",
        _two(
            "How long does it take to burn off {word} {thing}?",
            "How long does it take to burn off {m} {thing}?",
            _number,
        ),
    ),
    (
        "num-fraction",
        "number",
        _two("How many calories are in {words} {thing}?", "How many calories are in one {thing}?", _fraction),
    ),
    # round three: more kinds and more wordings of each
    ("role-acquire", "role", _swap("Why did {x} try to buy {y}?", COMPANIES)),
    ("role-beat", "role", _swap("How many times has {x} beaten {y}?", TEAMS)),
    ("role-export", "role", _swap("What does {x} export to {y}?", COUNTRIES)),
    ("role-passive", "role", _swap_reworded("Can a {x} sue a {y}?", "Can a {y} be sued by a {x}?", PEOPLE)),
    ("role-advice", "role", _swap("My {x} wants to meet my {y}. How should I prepare?", PEOPLE)),
    ("role-teach", "role", _swap("What should a {x} learn from a {y}?", PEOPLE)),
    ("order-before", "order", _swap("Should I {x} before I {y}?", STEPS)),
    ("order-first", "order", _swap_reworded("Do you {x} first and then {y}?", "Do you {y} after you {x}?", STEPS)),
    ("dir-import", "direction", _swap("What are the tariffs on goods shipped from {x} to {y}?", COUNTRIES)),
    ("dir-call", "direction", _swap("How much does it cost to call {y} from {x}?", COUNTRIES)),
    ("dir-exchange", "direction", _swap("What is the exchange rate of {x} to {y}?", CURRENCIES)),
    ("dir-backup", "direction", _swap("How do I restore files from {x} to {y}?", SYSTEMS)),
    ("dir-compare", "direction", _swap("Why is {x} more expensive than {y}?", COMPANIES)),
    (
        "neg-far-clause",
        "negation",
        _choice("Explain why {c} is a good idea.", "Explain why {c} is not a good idea.", "c", CLAIMS),
    ),
    ("neg-never", "negation", _choice("Is it ok if {c} every day?", "Is it ok if {c} never?", "c", CLAIMS)),
    ("neg-safe", "negation", _choice("Why is it fine if {c}?", "Why is it not fine if {c}?", "c", CLAIMS)),
    ("term-protocol", "term", _substitute("What port does {x} use by default?", PROTOCOL_TERMS)),
    ("term-protocol2", "term", _substitute("Is {x} faster for streaming video?", PROTOCOL_TERMS)),
    ("term-dose", "term", _substitute("Is {x} of vitamin D a day safe?", DOSES)),
    ("term-dose2", "term", _substitute("My child swallowed {x} of the syrup. Is that dangerous?", DOSES)),
    ("entity-country", "entity", _substitute("What is the minimum wage in {x}?", COUNTRIES)),
    ("entity-company", "entity", _substitute("How do I apply for an internship at {x}?", COMPANIES)),
]

PARAPHRASES: list[tuple[str, str, Fill]] = [
    ("para-numwords", "numeral", _two("Is {n} {thing} a day too many?", "Is {word} {thing} a day too many?", _number)),
    (
        "para-numwords2",
        "numeral",
        _two(
            "How long does it take to burn off {n} {thing}?",
            "how long to burn off {word} {thing}",
            _number,
        ),
    ),
    (
        "para-fraction",
        "numeral",
        _two("How many calories are in {digits} {thing}?", "How many calories are in {words} {thing}?", _fraction),
    ),
    (
        "para-decimal",
        "numeral",
        _two("Convert {decimal} {thing} to metric.", "Convert {words} {thing} to metric.", _fraction),
    ),
    ("para-state", "abbreviation", _abbreviated(PLACE_QUESTIONS, ABBREVIATIONS[:5])),
    ("para-agency", "abbreviation", _abbreviated(AGENCY_QUESTIONS, ABBREVIATIONS[5:])),
    ("para-term", "abbreviation", _abbreviated(TERM_QUESTIONS, TERM_ABBREVIATIONS)),
    ("para-typo", "typo", _typo("Why is the {w} important?")),
    ("para-typo2", "typo", _typo("Tell me a fact about the word {w}.")),
    ("para-polite", "register", _topic("How do I {t}?", "Could you please tell me how to {t}?")),
    ("para-terse", "register", _topic("What is the best way to {t}?", "best way to {t}")),
    ("para-need", "register", _topic("How can I {t}?", "I need to {t}. How do I do it?")),
    ("para-one", "register", _topic("How does one {t}?", "How do I {t}?")),
    ("para-steps", "register", _topic("What are the steps to {t}?", "Steps to {t}?")),
    (
        "para-cheapest",
        "superlative",
        _topic("What is the cheapest way to {t}?", "What is the least expensive way to {t}?"),
    ),
    ("para-fastest", "superlative", _topic("What is the quickest way to {t}?", "What's the fastest way to {t}?")),
    # round three
    ("para-dozen", "numeral", _dozen("How many calories are in {n} {thing}?", "calories in {n} {thing}")),
    ("para-dozen2", "numeral", _dozen("Is {n} {thing} too many for one day?", "Are {n} {thing} too many in a day?")),
    (
        "para-ordinal",
        "numeral",
        _ordinal("Summarize the {o} chapter of the book.", "Give me a summary of the book's {o} chapter."),
    ),
    (
        "para-ordinal2",
        "numeral",
        _ordinal("What happened on the {o} day of the trip?", "what happened on the {o} day of our trip"),
    ),
    ("para-medical", "abbreviation", _abbreviated(ABBREVIATION_SENTENCES, MEDICAL_ABBREVIATIONS)),
    (
        "para-state2",
        "abbreviation",
        _abbreviated(["Best hikes near {x}?", "Is {x} good to retire in?"], ABBREVIATIONS[:5]),
    ),
    ("para-typo3", "typo", _typo("Can you check the {w} in this email?")),
    ("para-typo4", "typo", _typo("What does {w} mean in a sentence?")),
    ("para-casual", "register", _topic("How do I {t}?", "hey, how do you {t}")),
    ("para-please", "register", _topic("Explain how to {t}.", "Please explain how to {t}, thanks!")),
    ("para-want", "register", _topic("How can I {t}?", "I want to {t}, any tips?")),
    ("para-tell", "register", _topic("Tell me how to {t}.", "What should I do to {t}?")),
    ("para-largest", "superlative", _topic("What is the simplest way to {t}?", "What is the easiest way to {t}?")),
]


def split_of(template_id: str) -> str:
    digest = hashlib.sha256(template_id.encode()).digest()
    return "heldout" if digest[0] % HELDOUT_SHARE == 0 else "dev"


def generate(templates: list[tuple[str, str, Fill]], same: bool) -> Iterator[dict[str, object]]:
    for template_id, kind, fill in templates:
        rng = random.Random(f"{SEED}:{template_id}")
        seen: set[tuple[str, str]] = set()
        for _ in range(PER_TEMPLATE * 4):
            pair = fill(rng)
            if pair in seen or pair[0] == pair[1]:
                continue
            seen.add(pair)
            yield {"a": pair[0], "b": pair[1], "same": same, "kind": kind, "template": template_id,
                   "split": split_of(template_id)}  # fmt: skip
            if len(seen) == PER_TEMPLATE:
                break


def main() -> None:
    for name, templates, same in (("nearmiss", NEAR_MISSES, False), ("paraphrase", PARAPHRASES, True)):
        rows = list(generate(templates, same))
        (HERE / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        splits = {split: sum(row["split"] == split for row in rows) for split in ("dev", "heldout")}
        print(f"{name}.jsonl: {len(rows)} pairs {splits}")


if __name__ == "__main__":
    main()
