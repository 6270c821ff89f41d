import json
import math
import os
import subprocess
import sys

import pytest

from subsecond.cache.guard import (
    DEFAULT_SIMILARITY_THRESHOLD,
    DEFAULT_VERIFIER_PROBABILITY,
    OPERATING_POINTS,
    OVERRULABLE_RULES,
    RULES,
    VERIFIED_RULES,
    Acceptance,
    OperatingPoint,
    SemanticDecision,
    VerifierFailure,
    accept_candidates,
    accept_semantic,
    false_hit_reason,
    operating_point,
    same_text,
)

# Prompts that embed close but need different answers, with the reason the guard must give.
NEAR_MISSES = [
    # the four named in the design
    ("How do I enable two-factor authentication?", "How do I disable two-factor authentication?", "negation"),
    ("What is 15% of 80?", "What is 15% of 90?", "number"),
    ("What is the capital of Austria?", "What is the capital of Australia?", "entity"),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?", "direction"),
    # negation: negators, opposite prefixes, antonyms, opposite particles, verbs of not doing
    ("Why does my phone charge?", "Why doesn't my phone charge?", "negation"),
    ("Is the refund approved?", "Is the refund not approved?", "negation"),
    ("Is it safe to swim after eating?", "Is it unsafe to swim after eating?", "negation"),
    ("How do I add a printer to my network?", "How do I remove a printer from my network?", "negation"),
    ("Which files should I include in the backup?", "Which files should I exclude from the backup?", "negation"),
    ("How can I increase my screen brightness?", "How can I decrease my screen brightness?", "negation"),
    ("Should I stretch before running?", "Should I stretch after running?", "negation"),
    ("What is the smallest planet?", "What is the largest planet?", "negation"),
    ("How do I log in to my router?", "How do I log out of my router?", "negation"),
    ("How do I turn on captions?", "How do I disable captions?", "negation"),
    ("Which fruits should I eat before bed?", "Which fruits should I avoid before bed?", "negation"),
    # number: digits, number words, decimals, percentages, ordinals, clock times
    ("How much protein is in two eggs?", "How much protein is in 3 eggs?", "number"),
    ("Is a GPA of 3.5 good?", "Is a GPA of 3.8 good?", "number"),
    ("What is 15 percent of 200?", "What is 20% of 200?", "number"),
    ("Summarise the first chapter.", "Summarise the second chapter.", "number"),
    ("Set an alarm for 7am.", "Set an alarm for 7pm.", "number"),
    ("How much is 10k dollars in euros?", "How much is 1,000 dollars in euros?", "number"),
    ("What is 2 to the 10th power?", "What is 10 to the 2nd power?", "number"),  # the numbers traded
    # a number only one prompt gives: a detail added, measured apart ("an egg" is no number)
    ("How many calories are in an egg?", "How many calories are in 3 eggs?", "added_number"),
    ("Who won the election in 2016?", "Who won the election?", "added_number"),
    # time
    ("What is on TV today?", "What is on TV tomorrow?", "time"),
    ("Is the gym open on Saturday?", "Is the gym open on Sunday?", "time"),
    ("What were the top stories last week?", "What were the top stories last month?", "time"),
    # direction
    ("Can a cat eat dog food?", "Can a dog eat cat food?", "direction"),
    ("How do I send money from the US to India?", "How do I send money from India to the US?", "direction"),
    ("Is a lion faster than a zebra?", "Is a zebra faster than a lion?", "direction"),
    ("Can a doctor sue the hospital?", "Can the hospital sue a doctor?", "direction"),
    # entity: capitalised, mixed-case, model numbers; a near spelling is still another entity
    ("How do I learn Java?", "How do I learn JavaScript?", "entity"),
    ("Who is the president of Iran?", "Who is the president of Iraq?", "entity"),
    ("Is the Galaxy S23 waterproof?", "Is the Pixel 8 waterproof?", "number"),
    ("How do I reset my iPhone?", "How do I reset my Android phone?", "entity"),
    # one content word swapped for another in the same sentence
    ("Write a haiku about the sea.", "Write a sonnet about the sea.", "substitution"),
    ("What are the side effects of metformin?", "What are the side effects of metoprolol?", "entity"),
    ("What is the cheapest way to get to Rome?", "What is the quickest way to get to Rome?", "substitution"),
    ("Is it careful to drive at night?", "Is it careless to drive at night?", "negation"),
    # quantifier: universal against existential
    ("Do all birds migrate in winter?", "Do some birds migrate in winter?", "quantifier"),
    ("Is every vaccine approved for children?", "Is any vaccine approved for children?", "quantifier"),
    ("Do most dogs like swimming?", "Do few dogs like swimming?", "quantifier"),
    # direction: a route whose ends are a symbol ("https" is no plural) or a hyphenated word, or
    # named after a possessive; two actions in the other order
    ("Can I redirect https to http?", "Can I redirect http to https?", "direction"),
    ("is it cheaper to ship from canada to the us", "is it cheaper to ship from the us to canada", "direction"),
    ("How to map non-ascii to ascii in Python", "How to map ascii to non-ascii in Python", "direction"),
    ("Move my files from my laptop to the cloud", "How to move files from the cloud into my laptop?", "direction"),
    ("Should I wash my face then apply sunscreen?", "Should I apply sunscreen then wash my face?", "direction"),
    # role: the asker as subject in one and object in the other; a passive whose agent is not the
    # active's subject
    ("Can my landlord sue me for unpaid rent?", "Can I sue my landlord for unpaid rent?", "role"),
    ("What if my brother owes us money?", "What if we owe my brother money?", "role"),
    ("The driver was hit by the cyclist, who pays?", "The driver hit the cyclist, who pays?", "role"),
    # entity: a unit after a number whose case differs
    ("Is 2 TB enough for photos?", "Is 2 Tb enough for photos?", "entity"),
    ("Is a 5 Mb file too big to email?", "Is a 5 MB file too big to email?", "entity"),
    # issue 13, round five: the near misses of the shapes the paraphrases below let through
    ("Which laptop is best for 60k?", "Which laptop is best for 6k?", "number"),
    ("What happened on the 10th day?", "What happened on the 11th day?", "number"),
    ("How do I delete all my old tweets?", "How do I delete one of my old tweets?", "quantifier"),
    ("Regex to replace every match in a string", "Regex to replace the first match in a string", "quantifier"),
    ("Is coffee bad for you?", "Why is coffee not bad for you?", "negation"),
    ("How do I get into the IITs?", "How do I get into the NITs?", "entity"),
    ("How much was the house bought for?", "How much was the house sold for?", "negation"),
    ("What are the best movies of 2015?", "What are the best books of 2015?", "substitution"),
    ("Is the employer liable for the accident?", "Is the employee liable for the accident?", "substitution"),
    ("Do you rinse first and then apply conditioner?", "Do you rinse after you apply conditioner?", "direction"),
    ("When painting a wall, do I sand and then prime?", "When painting a wall, do I prime and then sand?", "direction"),
    ("Is the sun bigger than the moon?", "Is the moon bigger than the sun?", "direction"),
    ("Is the sun bigger than the moon?", "Is the moon not smaller than the sun?", "negation"),
    ("Does ibuprofen replace paracetamol?", "Does paracetamol replace ibuprofen?", "direction"),
    # another unit after the same number names another quantity, whatever the case
    ("Is 50 ms a good ping?", "Is 50 Mbps a good ping?", "entity"),
    ("is a 20 ms ping good", "is a 20 mbps ping good", "entity"),
    ("How much is 3 kg of flour?", "How much is 3 lb of flour?", "entity"),
    # two runs of words traded around a verb: roles of two-word nouns, possessives
    ("Can a senior engineer mentor a product manager?", "Can a product manager mentor a senior engineer?", "direction"),
    # round seven: a passive asked with a question word, or opening the question, against the active
    # with the other actor; he and she trading roles; a name told apart by a symbol ("C#", "C++")
    ("Who was mentored by Socrates?", "Who mentored Socrates?", "role"),
    ("What is hunted by owls?", "What hunts owls?", "role"),
    ("Was the champion beaten by the rookie?", "Did the champion beat the rookie?", "role"),
    ("Can he evict her for smoking?", "Can she evict him for smoking?", "role"),
    ("How do I read a file in C?", "How do I read a file in C#?", "entity"),
    ("is c++ hard to learn", "is c hard to learn", "substitution"),
    # the asker taking the place of "my X" doing the same; two terms no dictionary holds traded;
    # opposites of size and direction
    ("Can my landlord enter my flat?", "Can I enter my landlord's flat?", "role"),
    ("how do i take my sister's name off my mortgage", "how do i take my name off my sister's mortgage", "role"),
    ("I co-signed my friend's lease and he moved out", "my friend co-signed my lease and he moved out", "role"),
    ("how to migrate data in mysql", "how to migrate data in postgres", "entity"),
    ("pytorch vs keras for beginners", "tensorflow vs keras for beginners", "entity"),
    ("how to make a sauce thicker", "how to make a sauce thinner", "negation"),
    # two members of one closed set of alternatives (months, units, formats), also where one is a
    # stopword elsewhere ("may")
    ("what to plant in march", "what to plant in may", "entity"),
    ("what is the national dish of slovenia", "what is the national dish of slovakia", "entity"),
    ("how many mAh does this power bank have", "how many Wh does this power bank have", "entity"),
    ("is it faster to boil an egg for a minute", "is it faster to boil an egg for an hour", "entity"),
    ("My cat scratched the neighbour's dog, who pays?", "The neighbour's cat scratched my dog, who pays?", "direction"),
    # two places traded where one is named by its people or language, regular or not
    ("Is Indian food popular in Japan?", "Is Japanese food popular in India?", "direction"),
    ("Do the Dutch like to visit Spain?", "Do the Spanish like to visit the Netherlands?", "direction"),
    ("Is Chinese food popular in Thailand?", "Is Thai food popular in China?", "direction"),
    # issue 13, round six: "and" that orders ("and then", "first ... after") is no symmetric word; a noun
    # phrase traded with its determiner, or whoever's possessive it keeps; opposites of number and age
    ("Do I apply the primer and then the paint?", "Do I apply the paint and then the primer?", "direction"),
    (
        "Do you install the drivers first and the update after?",
        "Do you install the update first and the drivers after?",
        "direction",
    ),
    ("What if my dog bites another dog at the park?", "What if another dog bites my dog at the park?", "direction"),
    ("Why does my son hit his younger brother?", "Why does my younger brother hit my son?", "direction"),
    (
        "Is sleeping fewer than 6 hours a night unhealthy?",
        "Is sleeping more than 6 hours a night unhealthy?",
        "negation",
    ),
    ("Best board games for kids?", "Best board games for adults?", "negation"),
    # a run of words for another with none related: another audience or case (a rule the verifier may overrule)
    ("Good hiking boots for beginners?", "Good hiking boots for experienced climbers?", "phrase"),
    ("What shots does a kitten need?", "What shots does an adult cat need?", "phrase"),
    # a dictionary word one letter from a term the dictionary lacks is still another word
    ("Is http secure for logins?", "Is https secure for logins?", "substitution"),
    # round eight: someone else doing the same (the asker for a named party); a role after a comma; "all"
    # for "a"; a route through "into" with a modifier on its ends; one letter for another (flags, vitamins)
    ("the airline cancelled my flight, can i get a refund", "i cancelled my flight, can i get a refund", "role"),
    ("the airline cancelled my flight, can i sue", "i cancelled my flight, can i sue the airline", "role"),
    ("my landlord wants to end the lease early", "i want to end the lease early", "role"),
    ("the owner has cancelled our booking", "we have cancelled our booking", "role"),
    ("my mother in law doesnt like me, how do i handle it", "i dont like my mother in law, how do i handle it", "role"),
    ("how do i drop all tables in postgres", "how do i drop a table in postgres", "quantifier"),
    ("can i roll my old 401k into a roth ira", "can i roll my roth ira into my old 401k", "direction"),
    ("what does the -r flag do in cp", "what does the -p flag do in cp", "entity"),
    ("is vitamin b good for hair", "is vitamin c good for hair", "entity"),
    ("is it safe to run git push -f on a shared branch", "is it safe to run git push -u on a shared branch", "entity"),
    ("why does my husband ignore me when i bring up money", "why do i ignore my husband when he brings it up", "role"),
    ("can i bring both my dogs on a flight", "can i bring one of my dogs on a flight", "quantifier"),
    ("will i be charged after the trial unless i cancel", "will i be charged after the trial if i cancel", "negation"),
    ("copy a file out of a container onto the host", "copy a file from the host into a container", "direction"),
    ("how do i merge several pdfs into one file", "how do i split one pdf into several files", "negation"),
    # the past against the future in the same words
    ("who won the world cup", "who will win the world cup", "time"),
    ("what was the minimum wage in ohio", "what will the minimum wage be in ohio", "time"),
    ("has the fed raised interest rates", "will the fed raise interest rates", "time"),
    # after round eight's test set was measured: a capital letter that names ("type A", "class B"), not
    # an article; roles traded while both prompts address someone
    ("can type A blood take a transfusion from type O", "can type O blood take a transfusion from type A", "direction"),
    ("how do you say i miss you in french", "how do you say you miss me in french", "role"),
    # can against should, asked yes or no; two places traded through a demonym typed in lower case
    ("can i break my lease", "should i break my lease", "modal"),
    ("do i need a visa to visit brazil as a canadian", "do i need a visa to visit canada as a brazilian", "direction"),
    # round nine: a negation moved to another verb or clause; a duty against advice, asked yes or no
    ("my dog isn't eating but is still drinking water", "my dog is eating but isn't drinking any water", "negation"),
    ("list pods that are not ready but are running", "list pods that are ready but not running", "negation"),
    ("do i legally have to give notice when quitting", "should i give notice when quitting", "modal"),
    ("am i required to wear a helmet in oregon", "should i wear a helmet in oregon", "modal"),
    ("can i legally park on the sidewalk", "should i park on the sidewalk", "modal"),  # an adverb that stresses
    # a condition or scope added at the end; the past for the present (both rules the verifier may overrule)
    ("how much ibuprofen can i take in a day", "how much ibuprofen can i take in a day while pregnant", "condition"),
    ("can a convicted felon vote", "can a convicted felon vote in florida", "condition"),
    ("how do i apologize to my girlfriend", "how do i apologize to my girlfriend after i cheated on her", "condition"),
    ("was pluto classified as a planet", "is pluto classified as a planet", "tense"),
    ("was smoking ever allowed on flights", "is smoking allowed on flights", "tense"),
    # round eleven: whether it may happen against whether it will; the past against the future with
    # "next" or a passive "get"
    ("could i be deported for a dui on a green card", "will i be deported for a dui on a green card", "modal"),
    ("was my car recalled", "will my car get recalled", "time"),
    ("when did the world cup start", "when will the next world cup start", "time"),
    # a thing with two owners in one prompt ("my car" and "a friend's car")
    ("does my car insurance cover me if i crash a friend's car", "does my car insurance cover a friend who crashes my car", "role"),  # noqa: E501
    # round eleven: a thing and its "-less"; "too much" / "too little"
    ("easy fudgy eggless brownie recipe", "easy fudgy brownie recipe with eggs", "negation"),
    ("signs you're watering a monstera too much", "signs you're watering a monstera too little", "negation"),
    # round eleven: an operator of arithmetic or code, which the words alone would not show
    ("does == compare types in js", "does === compare types in js", "entity"),
    ("is x != y in python", "is x == y in python", "entity"),
    ("what is 3/4 + 1/8", "what is 3/4 - 1/8", "negation"),  # plus and minus are opposites
    ("what is 6 * 7", "what is 6 + 7", "entity"),
    # round twelve: a synonym met in its group keeps its antonyms; a verb that shares a synonym's stem
    ("how to raise my credit score", "how to lower my credit score", "negation"),
    ("at what age can my kid ride in the front seat", "at what age can my child sit in the front seat", "substitution"),
    ("can i take tylenol for a fever", "can i take advil for a fever", "substitution"),
    ("solve 3x + 7 = 22", "solve 3x - 7 = 22", "negation"),
]

# Prompts that ask the same thing: the guard must let them share an answer.
PARAPHRASES = [
    ("What is 15% of 80?", "Calculate 15 percent of 80."),
    ("How many calories are in 2 eggs?", "Calorie count for two eggs?"),
    ("In 5 gallons how many 2 liter bottles are there?", "How many 2 liter bottles are there in 5 gallons?"),
    ("what is the capital of australia", "What is the capital of Australia?!"),
    ("Which city is Australia's capital?", "What is the capital of Australia?"),
    ("Who won the World Cup in 2014?", "Which team won the 2014 World Cup?"),
    ("How much is 50 dollars in euros?", "What is $50 in euros?"),
    ("Is the museum closed on Mondays?", "Does the museum close on Mondays?"),
    ("How do I turn off dark mode in the app?", "How can I disable dark mode in the app?"),
    ("What is the weather forecast for tomorrow?", "What's tomorrow's weather forecast?"),
    ("How far is the Moon from Earth?", "What is the distance between the Earth and the Moon?"),
    ("What is the difference between a cocktail and a mocktail?", "Difference between a mocktail and a cocktail?"),
    ("How do I recieve payments on PayPal?", "How do I receive payments on PayPal?"),
    ("What is your favourite colour?", "What is your favorite color?"),
    ("How does one learn to cook?", "How do I learn to cook?"),
    ("Is 1,000 a lot of steps?", "Is 1000 a lot of steps?"),
    ("What do Canadians eat for breakfast?", "What do people in Canada eat for breakfast?"),
    # one kind of quantifier on both sides, or a quantifier of time ("every day")
    ("Do any cats like water?", "Do some cats like water?"),
    ("What can I do every day to improve myself?", "What are some things I can do every day to improve myself?"),
    ("Is it safe at all to fly while pregnant?", "Is it safe to fly while pregnant?"),
    ("What are a few good books on Rome?", "What are some good books on Rome?"),
    ("Which is the most useful language for all beginners?", "Which language is the most useful for every beginner?"),
    # a route kept, whatever the possessive or hyphen
    ("How do I move files from my laptop to the cloud?", "How do I move files from the laptop to the cloud?"),
    ("How to redirect www to non-www?", "How do I redirect www to non www?"),
    # the same order of actions, a clause moved to the front
    ("Should I stretch before I run?", "Before I run, should I stretch?"),
    ("Wash your face then apply sunscreen?", "Should I wash my face then apply sunscreen?"),
    # the asker as an object that asks or is addressed to someone
    ("How do I change a flat tire?", "Could you please tell me how to change a flat tire?"),
    ("How do I cope with stress?", "Can you help me cope with stress?"),
    # a unit's case written in lower case on one side
    ("Is 2 TB enough for photos?", "is 2 tb enough for photos"),
    # issue 13, round five: a numeral with a suffix read whole; "one"/"first" said with an article or
    # not at all, or the pronoun "one"; an alternative offered ("or not"); accents, acronyms' plurals,
    # irregular verbs, common synonyms and derived words; two actions in the same order around another
    # marker; a comparison from the other side; a symmetric relation
    ("Which laptop is best for 60k?", "Which laptop is best for 60,000?"),
    ("What happened on the 10th day?", "What happened on the tenth day?"),
    ("Is 12 hours of sleep too much for one night?", "Is 12 hours of sleep too much in a night?"),
    ("How much can one earn from a blog?", "How much can you earn from a blog?"),
    ("What should I do for my first car?", "What should I do for my car?"),
    ("Is coffee bad for you? Why or why not?", "Is coffee bad for you?"),
    ("Is a degree needed or not?", "Is a degree needed?"),
    ("Is a degree needed? If not, what is?", "Is a degree needed?"),
    ("Is Pokémon GO worth playing?", "Is Pokemon GO worth playing?"),
    ("How do I get into the IITs?", "How do I get into an IIT?"),
    ("How much money have you made from YouTube?", "How much money do you make from YouTube?"),
    ("What are the best movies of 2015?", "What are the best films of 2015?"),
    ("How can I fix a leaking tap?", "How can I repair a leaking tap?"),
    ("Is happiness a choice?", "Is being happy a choice?"),
    ("Why are cats and dogs so different?", "Why do cats and dogs differ so much?"),
    ("Have you tried yoga for back pain?", "Do you try yoga for back pain?"),
    ("Do you rinse first and then apply conditioner?", "Do you apply conditioner after you rinse?"),
    ("Is the sun bigger than the moon?", "Is the moon smaller than the sun?"),
    ("Does ibuprofen interact with paracetamol?", "Does paracetamol interact with ibuprofen?"),
    ("How far is Leeds from York?", "How far is York from Leeds?"),
    ("Is Indian food spicy?", "Is the food in India spicy?"),
    ("Can I mix red wine and white wine?", "Can I mix white wine and red wine?"),
    ("Is 5 kg of rice enough for a week?", "Is 5 kilograms of rice enough for a week?"),
    ("calories in a hundred grams of rice", "calories in 100 g of rice"),
    ("What do the French eat for lunch?", "What do people in France eat for lunch?"),
    # round six: a misspelling (one edit from a dictionary word, itself in none); a word written as one
    # or as two; "and" between two things with an ordering word elsewhere
    ("How do I lern to swim as an adult?", "How do I learn to swim as an adult?"),
    ("common symptons of dehydration", "common symptoms of dehydration"),
    ("is it bad to drnik soda daily", "is it bad to drink soda daily"),
    ("how to setup a home vpn", "how to set up a home vpn"),
    ("where do i login to my bank account", "where do i log in to my bank account"),
    ("Can I mix salt and pepper first?", "Can I mix pepper and salt first?"),
    # round seven: a passive turned active with the same actor, also asked with a question word or with
    # "by" left at the end; a name written with its symbol or as two words; a pronoun trade that only
    # moves a clause
    ("Who wrote Dracula?", "Dracula was written by whom?"),
    ("What is this rash caused by?", "What causes this rash?"),
    ("What is eaten by koalas?", "What do koalas eat?"),
    ("The patient was infected by the nurse.", "The nurse infected the patient."),
    ("Was the champion beaten by the rookie?", "Did the rookie beat the champion?"),
    ("Is C# hard to learn?", "Is C sharp hard to learn?"),
    ("Is it worth buying a smart watch?", "Is it worth buying a smartwatch?"),
    ("Can she evict him if he smokes?", "If he smokes, can she evict him?"),
    ("should my dog eat grass", "should I let my dog eat grass"),
    ("what is my wife's name", "what is the name of my wife"),
    ("is grey paint good for a bedroom", "is gray paint good for a bedroom"),
    ("how many ounces in a cup", "how many oz in a cup"),
    ("may i travel in june", "can i travel in june"),
    ("What is Ron's patronus?", "What is Ron Weasley's patronus?"),
    ("how to install whatsapp", "how to install whatsap"),
    # round eight: clauses moved around commas; someone named generically for the asker
    (
        "how much notice do i give my employer before resigning in the uk",
        "in the uk, before resigning, how much notice do i give my employer",
    ),
    ("how can a person lose weight fast", "how can i lose weight fast"),
    ("using only my phone, how can i scan a document", "how can i scan a document using only my phone"),
    ("what happens if i quit my job", "what will happen if i quit my job"),
    ("best time to visit holland", "best time to visit the netherlands"),
    ("how can i break my lease", "how should i break my lease"),
    ("what is the capital of peru", "what is the capital city of peru"),
    # round nine: a negation that opens a question negates past its subject
    ("Why does not PMMA dissolve in water?", "Why doesn't PMMA dissolve in water?"),
    ("why won't my phone connect to wifi", "why does my phone not connect to wifi"),
    ("am i supposed to tip in japan", "should i tip in japan"),
    # round eleven: an operator spelt as a word
    ("what is 3 + 4", "what is 3 plus 4"),
    ("what is 6*7", "what is 6 times 7"),
    ("how to wait 3-5 days", "how to wait 3-5 days"),
    # round twelve: general synonyms; "site" is met as written, so "sit" stays a verb
    ("what are the advantages of solar panels", "what are the benefits of solar panels"),
    ("how can i boost my self-confidence", "how can i increase my self-confidence"),
    ("what kind of dog sheds least", "what type of dog sheds least"),
    ("my kid is scared of the dark", "my child is afraid of the dark"),
    ("how did the egyptians build the pyramids", "how did the egyptians construct the pyramids"),
    ("how long does tylenol take to work", "how long does acetaminophen take to work"),
    ("best site for cheap flights", "best website for cheap flights"),
]


@pytest.mark.parametrize(("query", "candidate", "reason"), NEAR_MISSES)
def test_near_misses_are_refused_with_their_reason(query: str, candidate: str, reason: str) -> None:
    assert false_hit_reason(query, candidate) == reason
    assert false_hit_reason(candidate, query) == reason


@pytest.mark.parametrize(("query", "candidate"), PARAPHRASES)
def test_paraphrases_pass(query: str, candidate: str) -> None:
    assert false_hit_reason(query, candidate) is None
    assert false_hit_reason(candidate, query) is None


def test_a_passive_keeps_its_roles_when_its_agent_is_the_actives_subject() -> None:
    # The role rule alone tells the passive that keeps the roles from the one that trades them (the
    # word-order rule lets a passive turned active with the same actor through, _voice_turned).
    passive = "The contract was cancelled by the supplier."
    assert false_hit_reason(passive, "The supplier cancelled the contract.", ("role",)) is None
    assert false_hit_reason(passive, "We cancelled the contract with the supplier.", ("role",)) == "role"
    assert false_hit_reason("We cancelled the contract with the supplier.", passive, ("role",)) == "role"


def test_the_verifier_judges_the_past_for_the_present() -> None:
    # the QQP duplicates ask "how were fossils formed" for "how are fossils formed" as often as a near
    # miss asks "was pluto a planet" for "is pluto a planet": the rule names it, the verifier may overrule
    assert false_hit_reason("How were fossils formed?", "How are fossils formed?") == "tense"
    assert {"tense", "condition"} <= set(OVERRULABLE_RULES)


def test_a_note_is_a_word_not_a_negation() -> None:
    # "notes", "noted" and "noting" stem to "not" if nothing stops them; one swapped word, for the verifier
    assert false_hit_reason("where can i buy sticky notes", "where can i buy sticky pads") == "substitution"
    assert false_hit_reason("what is a noted author", "what is a famous author") == "substitution"


def test_identical_prompts_pass() -> None:
    assert false_hit_reason("Why is the sky blue?", "Why is the sky blue?") is None


QUERY = "What is 15% of 80?"
SAME = "Calculate 15 percent of 80."
DIFFERENT = "What is 15% of 90?"


class Scripted:
    """A verifier that gives every pair one probability, to test the decision around it; the real
    ONNX verifier is tested in test_verifier.py."""

    def __init__(self, probability: float, failure: bool = False) -> None:
        self.value, self.failure, self.calls = probability, failure, 0

    def probability(self, cached: str, query: str) -> float:
        self.calls += 1
        if self.failure:
            raise VerifierFailure("the model did not run")
        return self.value


POINT = OperatingPoint(0.80, 0.5)


@pytest.mark.parametrize(
    ("query", "candidate", "similarity", "probability", "expected"),
    [
        (QUERY, SAME, 0.95, 0.9, SemanticDecision(True, "accepted")),
        (QUERY, SAME, 0.80, 0.5, SemanticDecision(True, "accepted")),
        (QUERY, SAME, 0.95, 0.49, SemanticDecision(False, "verifier:refused")),
        (QUERY, SAME, 0.79, 0.9, SemanticDecision(False, "below_threshold")),
        (QUERY, SAME, math.nan, 0.9, SemanticDecision(False, "below_threshold")),
        (QUERY, DIFFERENT, 0.99, 0.9, SemanticDecision(False, "guard:number")),
        (QUERY, DIFFERENT, 0.50, 0.9, SemanticDecision(False, "below_threshold")),
        ("Enable 2FA", "Disable 2FA", 0.97, 0.9, SemanticDecision(False, "guard:negation")),
    ],
)
def test_accept_semantic(
    query: str, candidate: str, similarity: float, probability: float, expected: SemanticDecision
) -> None:
    verifier = Scripted(probability)
    assert accept_semantic(query, candidate, similarity, Acceptance(POINT, verifier)) == expected
    # The verifier runs only for a pair that reached it: above the threshold and past the rules.
    assert verifier.calls == (expected.hit or expected.reason == "verifier:refused")


def test_one_text_once_normalised_is_served_without_the_verifier() -> None:
    verifier = Scripted(0.0)
    expanded = ("Is a BMI test expensive?", "is a body mass index test expensive")
    assert accept_semantic(*expanded, 0.9, Acceptance(POINT, verifier)) == SemanticDecision(True, "accepted")
    assert accept_semantic(*expanded, 0.79, Acceptance(POINT, verifier)).reason == "below_threshold"
    assert accept_semantic(*expanded, 0.9, Acceptance(POINT, None)) == SemanticDecision(True, "accepted")
    assert verifier.calls == 0
    # case within a word is kept ("MB" is not "Mb"), and any other word asks the verifier
    assert not same_text("When should I use MB?", "When should I use Mb?")
    assert not same_text("Is a BMI test expensive?", "Is a BMI check expensive?")
    # a number in words or digits, and a misspelt word, are the text the verifier reads (round nine)
    assert same_text("How many calories are in two bananas?", "How many calories are in 2 bananas?")
    assert same_text("Is it necessary to repot an orchid?", "Is it neccessary to repot an orchid?")
    assert not same_text("How many calories are in two bananas?", "How many calories are in 3 bananas?")
    assert not same_text("what does the cost of a coast guard job", "what does the cost of a cost guard job")
    # the same words but for inflection, articles and the auxiliaries that agree with them
    assert same_text("How many legs does a spider have?", "How many legs do spiders have?")
    assert not same_text("why does my cat eat grass", "why doesn't my cat eat grass")
    assert not same_text("how many legs does a spider have", "how many legs did a spider have")
    assert not same_text("what is -7 % 3 in python", "what is 7 % -3 in python")  # a minus sign is kept
    assert same_text("covid-19 symptoms", "covid 19 symptoms")  # a hyphen between words is not a sign
    assert not same_text("does == compare types in js", "does === compare types in js")  # operators are words
    assert accept_semantic("When should I use MB?", "When should I use Mb?", 0.99, Acceptance(POINT, verifier)) == (
        SemanticDecision(False, "verifier:refused")
    )


@pytest.mark.parametrize(
    ("overrule", "probability", "expected"),
    [
        (None, 1.0, SemanticDecision(False, "guard:substitution")),
        (0.9, 0.95, SemanticDecision(True, "accepted")),
        (0.9, 0.85, SemanticDecision(False, "guard:substitution")),
    ],
)
def test_the_verifier_overrules_a_word_rule_only_at_the_points_overrule(
    overrule: float | None, probability: float, expected: SemanticDecision
) -> None:
    verifier = Scripted(probability)
    point = OperatingPoint(0.80, 0.5, overrule)
    haiku, sonnet = "Write a haiku about the sea.", "Write a sonnet about the sea."
    assert accept_semantic(haiku, sonnet, 0.9, Acceptance(point, verifier)) == expected
    assert verifier.calls == (overrule is not None)
    # a rule that names a difference outright is never overruled
    assert accept_semantic(QUERY, DIFFERENT, 0.99, Acceptance(point, Scripted(1.0))) == SemanticDecision(
        False, "guard:number"
    )
    assert "number" not in OVERRULABLE_RULES
    # nor a rule for a pair longer than the verifier reads: it may differ where the verifier cannot see
    tail = " and ".join(["the waves"] * 20)
    long_haiku, long_sonnet = f"{haiku} {tail}", f"{sonnet} {tail}"
    assert false_hit_reason(long_haiku, long_sonnet) == "substitution"
    verifier = Scripted(1.0)
    decision = accept_semantic(long_haiku, long_sonnet, 0.99, Acceptance(point, verifier))
    assert decision == SemanticDecision(False, "guard:substitution") and verifier.calls == 0


def test_the_verifier_overrules_only_a_pair_no_other_rule_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # The rules stop at the first that refuses: an overrulable one found first must not hide another.
    from subsecond.cache import guard

    monkeypatch.setattr(guard, "OVERRULABLE_RULES", ("number", "substitution"))
    point = OperatingPoint(0.80, 0.5, 0.9)
    other_number = ("Is 80 g of sugar a day too much?", "Is 90 g of sugar a day too much?")
    assert false_hit_reason(*other_number) == "number"
    assert accept_semantic(*other_number, 0.95, Acceptance(point, Scripted(1.0))).hit
    also_negated = ("Is 80 g of sugar a day too much?", "Is 90 g of sugar a day not too much?")
    assert false_hit_reason(*also_negated) == "number"
    decision = accept_semantic(*also_negated, 0.95, Acceptance(point, Scripted(1.0)))
    assert decision == SemanticDecision(False, "guard:number")


def test_another_unit_after_the_same_number_is_never_overruled() -> None:
    # one word swapped, but a unit after a number: the entity rule, which the verifier cannot overrule
    point = OperatingPoint(0.80, 0.5, 0.9)
    acceptance = Acceptance(point, Scripted(1.0))
    decision = accept_semantic("Is 50 ms a good ping?", "Is 50 Mbps a good ping?", 0.95, acceptance)
    assert decision == SemanticDecision(False, "guard:entity")
    assert "entity" not in OVERRULABLE_RULES


def test_without_a_verifier_nothing_is_served() -> None:
    decision = accept_semantic(QUERY, SAME, 0.99, Acceptance(POINT, None))
    assert decision == SemanticDecision(False, "verifier:unavailable")


def test_a_verifier_that_fails_serves_nothing() -> None:
    decision = accept_semantic(QUERY, SAME, 0.99, Acceptance(POINT, Scripted(1.0, failure=True)))
    assert decision == SemanticDecision(False, "verifier:failed")


def test_the_verifier_sees_the_cached_prompt_first() -> None:
    seen: list[tuple[str, str]] = []

    class Recording(Scripted):
        def probability(self, cached: str, query: str) -> float:
            seen.append((cached, query))
            return 1.0

    accept_candidates(QUERY, [(SAME, 0.9)], Acceptance(POINT, Recording(1.0)))
    assert seen == [(SAME, QUERY)]


@pytest.mark.parametrize("point", ["1.5", "0.8:1.2", "nan", "lax", "0.8:x"])
def test_an_operating_point_is_a_name_a_cosine_or_a_cosine_and_probability(point: str) -> None:
    with pytest.raises(ValueError, match="strict"):
        operating_point(point)


def test_named_points_are_ordered_and_a_cosine_takes_the_default_probability() -> None:
    strict, default, loose = (OPERATING_POINTS[name] for name in ("strict", "default", "loose"))
    assert strict.probability >= default.probability >= loose.probability
    assert strict.similarity >= default.similarity >= loose.similarity
    assert default == OperatingPoint(DEFAULT_SIMILARITY_THRESHOLD, DEFAULT_VERIFIER_PROBABILITY)
    assert operating_point("0.8") == OperatingPoint(0.8, DEFAULT_VERIFIER_PROBABILITY)
    assert operating_point("0.8:0.7") == OperatingPoint(0.8, 0.7)


def test_every_rule_still_runs_before_the_verifier() -> None:
    assert set(VERIFIED_RULES) == set(RULES)
    haiku, sonnet = "Write a haiku about the sea.", "Write a sonnet about the sea."
    assert false_hit_reason(haiku, sonnet, VERIFIED_RULES) == "substitution"
    assert false_hit_reason(haiku, sonnet, ("number", "negation")) is None  # only the named rules run


def test_the_rules_decide_alike_whatever_the_hash_seed() -> None:
    """Python salts the hash of a string per process: a rule that read a set in its iteration order
    would decide differently on two replicas (round eleven: a thing with two owners did)."""
    pairs = [pair for q, c, *_ in NEAR_MISSES + PARAPHRASES for pair in ((q, c), (c, q))]
    script = (
        "import json, sys; from subsecond.cache.guard import false_hit_reason; "
        "print(json.dumps([false_hit_reason(q, c) for q, c in json.load(sys.stdin)]))"
    )
    def decide(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        command = [sys.executable, "-c", script]
        run = subprocess.run(command, input=json.dumps(pairs), capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        return run.stdout

    decisions = {decide(seed) for seed in ("1", "2", "3")}
    assert len(decisions) == 1
