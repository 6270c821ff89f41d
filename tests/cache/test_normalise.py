"""The normaliser (cache/normalise.py) on its own and through the guard, and the operating points an
operator chooses per tenant and model."""

import pytest

from subsecond.cache.guard import OPERATING_POINTS, false_hit_reason
from subsecond.cache.normalise import normalise
from subsecond.cache.settings import CacheSettings
from subsecond.kit.settings import SettingsError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Add 1/2 cup of flour", "Add 0.5 cup of flour"),
        ("Add half a cup of flour", "Add 0.5 cup of flour"),
        ("three quarters of a mile", "0.75 mile"),
        ("open 24/7", "open 24/7"),
        ("Why dont cats swim?", "Why don't cats swim?"),
        ("What does the Internal Revenue Service do?", "What does the IRS do?"),
        ("Sales tax in california", "Sales tax in CA"),
        ("How do I analyse and organise data?", "How do I analyze and organize data?"),
        ("Is exercise a promise?", "Is exercise a promise?"),
        ("the least expensive and quickest way", "the cheapest and fastest way"),
        ("whats the best way to sleep 8 hrs", "what is the best way to sleep 8 hours"),
        ("can i fly w/ a power bank in the u.s.", "can i fly with a power bank in the US"),
        ("How does one become a notary?", "How do you become a notary?"),
        ("where can one recycle batteries", "where can you recycle batteries"),
        ("is one tablet enough", "is one tablet enough"),
        ("Ask the Transportation Security Administration", "Ask the TSA"),
        ("lower my hemoglobin A1c", "lower my A1C"),
        ("the most safe and least painful option", "the safest and most painless option"),
        ("the tiniest country", "the smallest country"),
        ("the least dangerous, least difficult, least common way", "the safest, easiest, rarest way"),
        ("Are two dozen eggs too many?", "Are 24 eggs too many?"),
        ("half a dozen slices, a dozen cups, 3 dozen roses", "6 slices, 12 cups, 36 roses"),
        ("dozens of eggs", "dozens of eggs"),
        ("5 kilograms, two liters, 3 lbs, 60 miles per hour, 10 megabytes", "5 kg, two l, 3 lb, 60 mph, 10 MB"),
        ("a gram of salt, kilometers to miles", "a g of salt, km to miles"),
        ("my feet hurt after 10 feet", "my feet hurt after 10 ft"),
        ("earn money on the internet, sell over the Internet", "earn money online, sell online"),
        ("Do Americans visit America?", "Do people in the US visit the US?"),
        ("an American in South America", "an US in South America"),
        ("World War 2, the Second World War, WW2", "WWII, the WWII, WWII"),
        ("one and a half miles, 2 and a half hours", "1.5 miles, 2.5 hours"),
        ("a three point five gpa, from my point of view", "a 3.5 gpa, from my point of view"),
        ("avg rent in the most affordable city", "average rent in the cheapest city"),
        ("the 2nd round, the 10th day, the 21st", "the second round, the tenth day, the 21st"),
        ("meds w/o side effects b/c of my max dose", "medications without side effects because of my maximum dose"),
        ("my cumulative grade point average", "my cumulative GPA"),
        ("unclog a sink with out chemicals", "unclog a sink without chemicals"),
        ("built in 300 bc in bc canada", "built in 300 bc in bc canada"),  # "bc" is also a date and a place
        ("half an hour, a half-hour, a quarter of an hour", "30 minutes, a 30 minutes, 15 minutes"),
        ("a pint and a half, an hour and a half", "1.5 pints, 1.5 hours"),
        ("the super bowl in twenty twenty, born nineteen eighty-four", "the super bowl in 2020, born 1984"),
        ("twenty one pilots, half an hourglass", "twenty one pilots, 0.5 hourglass"),
        ("a couple of miles in a fortnight, born in the nineties", "2 miles in 2 weeks, born in the 1990s"),
        ("is my dr allowed, an s corp, med school", "is my doctor allowed, an s corporation, medical school"),
        ("git push -u origin", "git push -u origin"),  # a flag, not "you"
        ("my 3 yo, a 5 y/o, 2x faster", "my 3 year old, a 5 year old, 2x faster"),
        ("running 2x a week, twice a day", "running 2 times a week, 2 times a day"),
        ("a 401(k), a 403(b), three quarter inch plywood", "a 401k, a 403b, 0.75 inch plywood"),
        ("my appt for the rx", "my appointment for the prescription"),
        ("a k8s config, an env var", "a kubernetes configuration, an environment variable"),
        ("a tuberculosis test, two-factor authentication, an employer identification number", "a TB test, 2FA, an EIN"),
        ("hi, quick question: how do I read a CSV file? thanks in advance", "how do I read a CSV file?"),
        ("help how do i get rid of a wasp nest lol", "how do i remove a wasp nest"),
        ("help desk hours, hello world in python", "help desk hours, hello world in python"),
        # round twelve
        ("the nineteen twenties, the eighteen-nineties", "the 1920s, the 1890s"),
        ("200mg of ibuprofen, a 2.5L bottle, 16GB or 16Gb", "200 mg of ibuprofen, a 2.5 L bottle, 16 GB or 16 Gb"),
        ("got rid of the ants, sign up for classes, sign in", "removed the ants, register for classes, sign in"),
        ("keep my dog from barking, keep it from the store", "stop my dog from barking, keep it from the store"),
        ("js on a ps5, alright", "javascript on a playstation 5, okay"),
        ("72°F, bake at 400F, 180 ºC", "72 degrees fahrenheit, bake at 400 degrees fahrenheit, 180 degrees celsius"),
        ("350°, four hundred degrees F", "350 degrees, four hundred degrees fahrenheit"),
        ("4C hair, grade 5 C, C++ in 10C++", "4C hair, grade 5 C, C++ in 10C++"),
        # round thirteen: an amount in the larger unit it is a whole number (or a half) of
        ("48 hrs, a 2000g chicken, 3000ml, 5000 metres", "2 days, a 2 kg chicken, 3 l, 5 km"),
        ("an 18 month old, 6 months, a 24-hour fast", "an 1.5 year old, 0.5 years, a 1-day fast"),
        ("90 minutes, a 2 hr nap, 1000w, 1600cc", "1.5 hours, a 2 hour nap, 1 kw, 1.6 l"),
        ("1500 hours, 36 hours, 250 ml, 10 days", "1500 hours, 36 hours, 250 ml, 10 days"),
        ("open 7 days a week, how many days is 48 hours", "open 7 days a week, how many days is 48 hours"),
        ("convert 2000 g to kg", "convert 2000 g to kg"),  # a conversion between the two units
        ("half past 3, quarter to eight, half a cup", "3:30, 7:45, 0.5 cup"),
        ("the 80s, the early '90s, in my 30s", "the 1980s, the early 1990s, in my 30s"),
        ("the 19th century, eighteenth-century art", "the 1800s, 1700s art"),
        ("100 degrees f, three eighths", "100 degrees fahrenheit, 0.375"),
        ("i am unable to log in, i was not able to pay", "i can't log in, i couldn't pay"),
        ("dairy-free pancakes, sugar free cake, feel free", "without dairy pancakes, without sugar cake, feel free"),
        ("a decade old, two decades from now, the last decade", "10 years old, 20 years from now, the last decade"),
        ("at 6 in the morning, at nine at night, at noon", "at 6am, at 9pm, at 12pm"),
        ("explain like im five: what is a vpn", "explain in easy terms: what is a vpn"),
        ("how do you say thanks in japanese, if you don't mind?", "how do you say thanks in japanese"),
        ("is monosodium glutamate bad, the Federal Reserve", "is MSG bad, the Fed"),
        ("New York City, New York, the United States of America, united states", "NYC, NY, the US, US"),
    ],
)
def test_normalise_rewrites_one_meaning_to_one_spelling(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("How many calories are in 1/2 cup of rice?", "How many calories are in half a cup of rice?"),
        ("What is the minimum wage in TX?", "What is the minimum wage in Texas?"),
        ("How is ROI calculated?", "How is return on investment calculated?"),
        ("What is the cheapest way to learn French?", "What is the least expensive way to learn French?"),
        ("What is the quickest way to boil an egg?", "What's the fastest way to boil an egg?"),
        ("how does one get over jet lag", "how do you get over jet lag"),
        ("How do I file a complaint with the Federal Trade Commission?", "How do I file a complaint with the FTC?"),
        ("how long to boil eggs, approx", "how long to boil eggs, approximately"),
        ("hwo do i reset my router", "how do i reset my router"),
        ("how long shoud i rest after a run", "how long should i rest after a run"),
        ("Is 24 eggs too many for a day?", "Are two dozen eggs too many for a day?"),
        ("convert 1.5 miles to km", "convert one and a half miles to km"),
        ("Do you need a visa to visit America?", "Do you need a visa to visit the United States?"),
        ("What is the least common blood type?", "What is the rarest blood type?"),
        ("Which are the safest neighbourhoods in Leeds?", "Which are the least dangerous neighbourhoods in Leeds?"),
        ("Who will win the American election?", "Who will win the US election?"),
        ("how many kilometers is 5 miles", "how many km is 5 miles"),
        ("30 minute beginner workout", "half hour beginner workout"),
        ("how many fluid ounces are in a pint and a half", "how many fluid ounces are in 1.5 pints"),
        ("who won the super bowl in twenty twenty", "who won the super bowl in 2020"),
        ("can my hoa stop me putting up solar panels", "can my homeowners association stop me putting up solar panels"),
        ("my 3 yo wont sleep through the night", "my three year old won't sleep through the night"),
        ("is running 2x a week enough", "is running twice a week enough"),
        ("how to turn on 2fa for my instagram", "how to turn on two-factor authentication for my instagram"),
        ("can i get a tb test at a pharmacy", "can i get a tuberculosis test at a pharmacy"),
        ("how to stop a nosebleed", "how to halt a nosebleed"),
        # round twelve
        ("what was daily life like in the 1920s", "what was daily life like in the nineteen twenties"),
        ("can i take 200mg of ibuprofen", "can i take two hundred mg of ibuprofen"),
        ("how do i get rid of ants in the kitchen", "how do i eliminate ants in the kitchen"),
        ("how to keep a toddler from biting", "how to stop a toddler from biting"),
        ("how to sign up for night classes", "how to enroll in night classes"),
        ("how do i fall asleep quickly", "how do i fall asleep fast"),
        ("the least risky investment for a retiree", "the safest investment for a retiree"),
        ("my rent is 1,800 a month", "my rent is 1.8k a month"),
        ("bake chicken thighs at 400F for how long", "bake chicken thighs at four hundred degrees F for how long"),
        # round thirteen: one amount in two units, a share as a percentage, a decimal or a fraction
        ("is it ok to leave butter out for 48 hrs", "is it ok to leave butter out for two days"),
        ("can i give whole milk to my 18 month old", "can i give whole milk to my 1 and a half year old"),
        ("roast a 2kg chicken at 180c how long", "roast a 2000g chicken at 180c how long"),
        ("my flight lands at half past 3", "my flight lands at 3:30"),
        ("estate agent wants 2% on a 350k house", "estate agent wants 0.02 on a £350,000 house"),
        ("if unemployment pays 60 percent of my wage", "if unemployment pays 3/5 of my wage"),
        ("what did the 19th amendment do", "what did the nineteenth amendment do"),
        ("top ten novels of the 1980s", "top 10 novels of the eighties"),
        ("what did people eat in the 18th century", "what did people eat in the 1700s"),
        ("cant sleep after drinking coffee", "unable to sleep after drinking coffee"),
        ("dairy-free substitute for heavy cream", "substitute for heavy cream without dairy"),
        ("is a decade old car worth buying", "is a car that is 10 years old worth buying"),
        ("my flight leaves at 6am", "my flight leaves at 6 in the morning"),
        ("how should i study for the GRE", "how should i study for the graduate record examination"),
        ("what is the longest river in asia", "what is the lengthiest river in asia"),
        ("how fast is 100 mph in km/h", "how fast is 100 miles per hour in kilometers per hour"),
        ("am i allowed to pay off my car loan early", "can i pay off my car loan early"),
        ("gcd of 84 and 36", "gcd of 36 and 84"),
        ("how does IVF work", "how does in vitro fertilisation work"),
        ("should i get a covid-19 booster", "should i get a covid booster"),
    ],
)
def test_paraphrases_the_normaliser_lets_through(query: str, candidate: str) -> None:
    assert false_hit_reason(query, candidate) is None
    assert false_hit_reason(candidate, query) is None


@pytest.mark.parametrize(
    ("query", "candidate", "reason"),
    [
        ("Why do people eat late?", "Why dont people eat late?", "negation"),
        ("How many calories are in half a cup of rice?", "How many calories are in one cup of rice?", "number"),
        ("Explain Gbps to a beginner.", "Explain GBps to a beginner.", "entity"),
        ("How do I migrate from MySQL to Postgres?", "Steps to move to MySQL from Postgres", "direction"),
        ("Convert this JSON file to YAML.", "How can I turn YAML into JSON?", "direction"),
        ("Is one tablet enough for a headache?", "Are two tablets enough for a headache?", "number"),
        ("What does the form ask for?", "What does the farm ask for?", "substitution"),
        ("Is the mode a good summary here?", "Is the made a good summary here?", "substitution"),
        ("Are two dozen eggs too many?", "Are 12 eggs too many?", "number"),
        ("convert 1.5 miles to km", "convert one and a quarter miles to km", "number"),
        ("Do you need a visa to visit America?", "Do you need a visa to visit South America?", "entity"),
        ("What is the least common blood type?", "What is the most common blood type?", "negation"),
        ("The safest areas of Leeds?", "The most dangerous areas of Leeds?", "negation"),
        # a unit named after a number in one prompt and alone in the other still reads as one word
        ("convert 10 kilograms to pounds", "convert 10 pounds to kilograms", "direction"),
        ("a 45 minute workout", "a half hour workout", "number"),
        ("who won the super bowl in twenty twenty", "who won the super bowl in 2021", "number"),
        ("is running twice a week enough", "is running 3 times a week enough", "number"),
        ("can i open a 401(k) on my own", "can i open a 403(b) on my own", "number"),
        ("can i take 200mg of ibuprofen", "can i take 250 mg of ibuprofen", "number"),
        ("a laptop with 16GB of memory", "a laptop with 16 Gb of memory", "entity"),
        ("how do i sign in to gmail", "how do i sign up for gmail", "substitution"),
        ("my rent is 1.8k a month", "my rent is 1,600 a month", "number"),
        ("is 100F a fever", "is 100 degrees C a fever", "entity"),
        # round thirteen
        ("leave butter out for 48 hrs", "leave butter out for 3 days", "number"),
        ("a 2 hr nap", "a 90 minute nap", "number"),
        ("what's 25% of 60", "what's 0.2 of 60", "number"),
        ("the 19th century", "the 1900s", "number"),
        ("dairy-free ice cream brands", "dairy ice cream brands", "negation"),
        ("my flight leaves at 6 in the morning", "my flight leaves at 6 in the evening", "number"),
        ("am i allowed to pay off my car loan early", "should i pay off my car loan early", "modal"),
        ("what is 2 to the 10th", "what is 10 to the 2nd", "number"),
    ],
)
def test_near_misses_the_normaliser_does_not_hide(query: str, candidate: str, reason: str) -> None:
    assert false_hit_reason(query, candidate) == reason
    assert false_hit_reason(candidate, query) == reason


def test_thresholds_per_tenant_and_model_override_the_default() -> None:
    settings = CacheSettings.from_env(
        {"SUBSECOND_CACHE_SIMILARITY_THRESHOLDS": "acme=strict,acme/small=0.8,beta=loose"}
    )
    assert settings.threshold_for("acme", "small").similarity == 0.8
    strict = OPERATING_POINTS["strict"]
    assert settings.threshold_for("acme", "large") == settings.similarity_thresholds["acme"] == strict
    assert settings.threshold_for("beta", "small") == OPERATING_POINTS["loose"]
    # the stated rule may pick the same point for both (it did in issue 13's fourth round)
    assert settings.threshold_for("beta", "small").probability <= OPERATING_POINTS["default"].probability
    assert settings.threshold_for("other", "small").similarity == settings.similarity_threshold


@pytest.mark.parametrize("value", ["acme=lax", "acme=1.5"])
def test_a_threshold_that_is_neither_a_point_nor_a_cosine_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="SIMILARITY_THRESHOLDS"):
        CacheSettings.from_env({"SUBSECOND_CACHE_SIMILARITY_THRESHOLDS": value})
