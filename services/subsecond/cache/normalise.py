"""Rewrites a prompt so that equal meanings read alike before the guard compares two prompts.

The guard compares words; these rewrites make the common ways of writing the same thing the same
words, so that the guard does not refuse a paraphrase for its spelling:

- fractions in digits, glyphs or words become decimals ("1/2", "½", "half a" -> "0.5"), and a
  counted dozen its number ("a dozen" -> "12", "two dozen" -> "24", "half a dozen" -> "6"), a number
  and a half or a spoken decimal its digits ("one and a half" -> "1.5", "three point five" -> "3.5"),
  "a pint and a half" one and a half of the thing ("1.5 pints"), part of an hour its minutes ("half an
  hour" -> "30 minutes") and a year said in words its digits ("twenty twenty" -> "2020");
- an amount in a small unit that is a whole number (or a half) of a larger one is written in the
  larger ("48 hours" -> "2 days", "18 months" -> "1.5 years", "2000 g" -> "2 kg"), a time of day
  said in words its clock ("quarter to 8" -> "7:45"), a century by its ordinal its hundreds ("the
  19th century" -> "the 1800s") and a decade of the last century by two digits its four ("the 80s"
  -> "the 1980s"); a count of decades is years ("a decade old" -> "10 years old") and an hour said
  with its part of the day the clock's ("6 in the morning" -> "6am", "at noon" -> "at 12pm");
- a unit named in full after a number becomes its symbol ("5 kilograms" -> "5 kg", "10 megabytes" ->
  "10 MB", "3 lbs" -> "3 lb"), so that a different unit after the same number is a different quantity,
  and so does a unit's name elsewhere unless it is also an ordinary word ("feet"): otherwise "convert 50
  miles to kilometers" and "convert 50 kilometers to miles" would read "kilometers" in one and "km" in
  the other, and the guard would not see the two units traded;
- the first ten ordinals in digits become words ("2nd" -> "second");
- shortened words are written out ("hrs" -> "hours", "uni" -> "university", "whats" -> "what is",
  "a couple of" -> "2", "a fortnight" -> "2 weeks"), decades in words take digits ("the nineties" ->
  "the 90s"),
  and "one" the pronoun becomes "you" after a question word ("how does one" -> "how do you"); an age
  or a count typed short is written out ("my 3 yo" -> "my 3 year old", "2x a week" and "twice a
  week" -> "2 times a week", "401(k)" -> "401k");
- negations written without the apostrophe get it back ("dont" -> "don't"), "unable to" is "can't"
  and "X-free" is "without X" ("dairy-free" -> "without dairy"), so that one negation counts alike;
- abbreviations and their expansions meet on the abbreviation ("the Internal Revenue Service" ->
  "the IRS", "California" -> "CA", "hemoglobin A1c" -> "A1C", "World War 2" -> "WWII"): US states,
  federal agencies, finance, medical and computing terms, the world wars; "America" is "the US"
  (not South, North, Latin or Central America); "on the internet" is "online";
- British spellings become American ("analyse" -> "analyze", "organise" -> "organize");
- greetings, thanks and fillers around a question go ("hi, quick question: how do I ..." -> "how do
  I ...", "... thanks in advance", "... lol", "..., if you don't mind"), "explain like im five" is
  "explain in simple terms"; operators of arithmetic and code are the guard's;
- a few adjectives become one of their synonyms, in every degree ("quickest" -> "fastest"), and
  "least"/"less" + an adjective becomes its opposite's superlative or comparative ("least
  expensive" -> "cheapest"), so that neither reads as a negation.

Each table is closed and written here from general knowledge of English, not from any data set.
Every rewrite is a regular-expression pass over the text: linear in the prompt's length.

The pair verifier reads a pair through :func:`normalise_pair`: both prompts normalised, then a word
that one of them misspells or runs together written as the other spells it
(:func:`subsecond.cache.spelling.aligned`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from subsecond.cache import spelling

_NEGATED_WITHOUT_APOSTROPHE = re.compile(
    r"\b(do|does|did|is|are|was|were|has|have|had|should|would|could|must|need)nt\b", re.IGNORECASE
)
_CANT_WONT = re.compile(r"\b(ca|wo)nt\b", re.IGNORECASE)
# "unable to" is "can't", "was not able to" "couldn't": the same negation, written as the guard counts it.
_UNABLE = re.compile(r"\b(?:(am|is|are|was|were)\s+)?(?:unable|not able) to\b", re.IGNORECASE)

# A counted dozen: "a dozen", "half a dozen", "two dozen", "3 dozen" ("dozens" counts nothing).
_DOZEN_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10}
_DOZEN = re.compile(r"\b(half an?|a half|an?|one|two|three|four|five|six|ten|\d{1,3})[\s-]+dozen\b", re.IGNORECASE)
_DIGIT_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_DIGIT_WORD = "|".join(_DIGIT_WORDS)
_AND_A_HALF = re.compile(rf"\b({_DIGIT_WORD}|\d{{1,3}}) and a half\b", re.IGNORECASE)
# "a pint and a half", "an hour and a half": one and a half of the thing named.
_ONE_AND_A_HALF = re.compile(r"\ban? ([a-z]{3,}) and a half\b", re.IGNORECASE)
# Parts of an hour said in words: "half an hour" is "30 minutes", the number the guard compares.
_HOUR_PARTS = re.compile(r"\b(?:(half)(?: an |-| )|(?:a )?(quarter)(?: of an |-| ))hour\b", re.IGNORECASE)
# A year said in words: "twenty twenty" is 2020, "nineteen eighty four" 1984.
_TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fifty": 5, "sixty": 6, "seventy": 7, "eighty": 8, "ninety": 9}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_SPOKEN_YEAR = re.compile(
    rf"\b(nineteen|twenty) (?:({'|'.join(_TEENS)})|({'|'.join(_TENS)})(?:[ -]({'|'.join(_DIGIT_WORDS)}))?)\b",
    re.IGNORECASE,
)
_SPOKEN_DECIMAL = re.compile(rf"\b({_DIGIT_WORD}|\d{{1,3}}) point ((?:(?:{_DIGIT_WORD})\b ?)+)", re.IGNORECASE)
_FRACTION_DIGITS = re.compile(r"\b(\d{1,2})\s*[/\u2044]\s*(\d{1,2})\b")
# Fractions in words, longest first; "a"/"of a" after them is the article of the measured thing.
_FRACTION_WORDS = [
    (r"three quarters|three fourths|three quarter|three-quarter", "0.75"),
    (r"two thirds", "0.667"),
    (r"three eighths", "0.375"),
    (r"five eighths", "0.625"),
    (r"seven eighths", "0.875"),
    (r"two fifths", "0.4"),
    (r"three fifths", "0.6"),
    (r"four fifths", "0.8"),
    (r"one half|a half|half", "0.5"),
    (r"one third|a third", "0.333"),
    (r"one quarter|a quarter|one fourth|a fourth", "0.25"),
]
_FRACTION_PHRASE = re.compile(
    r"\b(" + "|".join(words for words, _ in _FRACTION_WORDS) + r")(?:\s+of)?(?:\s+an?\b)?", re.IGNORECASE
)
_FRACTION_VALUE = {variant: value for words, value in _FRACTION_WORDS for variant in words.split("|")}

# (abbreviation, expansions): written in prompts either way.
_ABBREVIATIONS = """
    AL:Alabama AK:Alaska AZ:Arizona AR:Arkansas CA:California CO:Colorado CT:Connecticut DE:Delaware
    FL:Florida GA:Georgia HI:Hawaii ID:Idaho IL:Illinois IN:Indiana IA:Iowa KS:Kansas KY:Kentucky
    LA:Louisiana ME:Maine MD:Maryland MA:Massachusetts MI:Michigan MN:Minnesota MS:Mississippi
    MO:Missouri MT:Montana NE:Nebraska NV:Nevada NH:New_Hampshire NJ:New_Jersey NM:New_Mexico
    NY:New_York NC:North_Carolina ND:North_Dakota OH:Ohio OK:Oklahoma OR:Oregon PA:Pennsylvania
    RI:Rhode_Island SC:South_Carolina SD:South_Dakota TN:Tennessee TX:Texas UT:Utah VT:Vermont
    VA:Virginia WA:Washington_state WV:West_Virginia WI:Wisconsin WY:Wyoming DC:Washington_DC
    US:United_States|United_States_of_America|USA|U.S.|U.S.A. UK:United_Kingdom|U.K. EU:European_Union
    UN:United_Nations NYC:New_York_City LA:Los_Angeles
    IRS:Internal_Revenue_Service FDA:Food_and_Drug_Administration EPA:Environmental_Protection_Agency
    CDC:Centers_for_Disease_Control|Centers_for_Disease_Control_and_Prevention
    FBI:Federal_Bureau_of_Investigation
    CIA:Central_Intelligence_Agency NASA:National_Aeronautics_and_Space_Administration
    DMV:Department_of_Motor_Vehicles SEC:Securities_and_Exchange_Commission WHO:World_Health_Organization
    NHS:National_Health_Service FAA:Federal_Aviation_Administration SSA:Social_Security_Administration
    ROI:return_on_investment APR:annual_percentage_rate APY:annual_percentage_yield
    ETF:exchange-traded_fund|exchange_traded_fund
    IPO:initial_public_offering GDP:gross_domestic_product CPI:consumer_price_index
    IRA:individual_retirement_account HSA:health_savings_account CD:certificate_of_deposit
    BP:blood_pressure UTI:urinary_tract_infection ADHD:attention_deficit_hyperactivity_disorder
    MRI:magnetic_resonance_imaging BMI:body_mass_index ER:emergency_room ICU:intensive_care_unit
    COPD:chronic_obstructive_pulmonary_disease IBS:irritable_bowel_syndrome OCD:obsessive-compulsive_disorder
    PTSD:post-traumatic_stress_disorder STD:sexually_transmitted_disease
    AI:artificial_intelligence ML:machine_learning OS:operating_system CPU:central_processing_unit
    GPU:graphics_processing_unit|graphics_card PC:personal_computer VPN:virtual_private_network
    RAM:random-access_memory|random_access_memory SSD:solid-state_drive|solid_state_drive
    API:application_programming_interface FAQ:frequently_asked_questions ASAP:as_soon_as_possible
    USPS:United_States_Postal_Service|U.S._Postal_Service|US_Postal_Service FTC:Federal_Trade_Commission
    FCC:Federal_Communications_Commission FEMA:Federal_Emergency_Management_Agency
    OSHA:Occupational_Safety_and_Health_Administration NIH:National_Institutes_of_Health
    TSA:Transportation_Security_Administration DOJ:Department_of_Justice DHS:Department_of_Homeland_Security
    USCIS:United_States_Citizenship_and_Immigration_Services|U.S._Citizenship_and_Immigration_Services
    FDIC:Federal_Deposit_Insurance_Corporation CFPB:Consumer_Financial_Protection_Bureau
    SBA:Small_Business_Administration IMF:International_Monetary_Fund WTO:World_Trade_Organization
    NATO:North_Atlantic_Treaty_Organization SNAP:Supplemental_Nutrition_Assistance_Program
    SSN:social_security_number SSI:supplemental_security_income PTO:paid_time_off HR:human_resources
    CEO:chief_executive_officer CFO:chief_financial_officer CPA:certified_public_accountant
    LLC:limited_liability_company HOA:homeowners_association|homeowners'_association|home_owners_association
    RN:registered_nurse AWS:Amazon_Web_Services EV:electric_vehicle FMLA:Family_and_Medical_Leave_Act
    HELOC:home_equity_line_of_credit EPS:earnings_per_share
    REIT:real_estate_investment_trust PMI:private_mortgage_insurance RSU:restricted_stock_unit
    YTD:year_to_date ETA:estimated_time_of_arrival DIY:do_it_yourself|do-it-yourself
    ECG:electrocardiogram|EKG CBC:complete_blood_count OTC:over-the-counter|over_the_counter
    GERD:gastroesophageal_reflux_disease RSV:respiratory_syncytial_virus HRT:hormone_replacement_therapy
    CPR:cardiopulmonary_resuscitation IV:intravenous A1C:HbA1c|hemoglobin_A1c|haemoglobin_A1c
    HPV:human_papillomavirus IBD:inflammatory_bowel_disease DVT:deep_vein_thrombosis
    PCOS:polycystic_ovary_syndrome CBT:cognitive_behavioral_therapy|cognitive_behavioural_therapy
    LDL:low-density_lipoprotein HDL:high-density_lipoprotein BPM:beats_per_minute GPA:grade_point_average
    CLI:command-line_interface|command_line_interface GUI:graphical_user_interface
    IDE:integrated_development_environment ISP:internet_service_provider DNS:domain_name_system
    CS:computer_science WWI:World_War_I|World_War_1|World_War_One|First_World_War|WW1
    WWII:World_War_II|World_War_2|World_War_Two|Second_World_War|WW2
    WW3:World_War_III|World_War_3|World_War_Three|Third_World_War|WWIII
    TB:tuberculosis RA:rheumatoid_arthritis CKD:chronic_kidney_disease CHF:congestive_heart_failure
    STI:sexually_transmitted_infection ALS:amyotrophic_lateral_sclerosis
    NSAID:nonsteroidal_anti-inflammatory_drug|non-steroidal_anti-inflammatory_drug
    NSAIDs:nonsteroidal_anti-inflammatory_drugs|non-steroidal_anti-inflammatory_drugs
    CSV:comma-separated_values|comma_separated_values
    SSRI:selective_serotonin_reuptake_inhibitor IUD:intrauterine_device IVF:in_vitro_fertilization
    PMS:premenstrual_syndrome ASD:autism_spectrum_disorder GP:general_practitioner
    PCP:primary_care_physician|primary_care_doctor|primary_care_provider EMT:emergency_medical_technician
    BAC:blood_alcohol_content|blood_alcohol_concentration TBI:traumatic_brain_injury
    SIDS:sudden_infant_death_syndrome DNR:do_not_resuscitate BMR:basal_metabolic_rate
    HIIT:high-intensity_interval_training|high_intensity_interval_training UV:ultraviolet
    HIV:human_immunodeficiency_virus ACL:anterior_cruciate_ligament
    TSH:thyroid-stimulating_hormone|thyroid_stimulating_hormone PSA:prostate-specific_antigen
    EIN:employer_identification_number ITIN:individual_taxpayer_identification_number
    FSA:flexible_spending_account EBT:electronic_benefits_transfer|electronic_benefit_transfer
    SSDI:social_security_disability_insurance RMD:required_minimum_distribution AGI:adjusted_gross_income
    DTI:debt-to-income|debt_to_income LTV:loan-to-value|loan_to_value NAV:net_asset_value
    GAAP:generally_accepted_accounting_principles ESPP:employee_stock_purchase_plan
    FHA:Federal_Housing_Administration ACA:Affordable_Care_Act EITC:earned_income_tax_credit
    CTC:child_tax_credit MBA:master_of_business_administration
    FAFSA:Free_Application_for_Federal_Student_Aid
    2FA:two-factor_authentication|two_factor_authentication|2-factor_authentication
    MFA:multi-factor_authentication|multifactor_authentication SSO:single_sign-on|single_sign_on
    URL:uniform_resource_locator HTML:hypertext_markup_language CSS:cascading_style_sheets
    SQL:structured_query_language OOP:object-oriented_programming|object_oriented_programming
    IoT:internet_of_things SaaS:software_as_a_service VM:virtual_machine LAN:local_area_network
    WAN:wide_area_network NAS:network-attached_storage|network_attached_storage
    OCR:optical_character_recognition NLP:natural_language_processing LLM:large_language_model
    UI:user_interface UX:user_experience SDK:software_development_kit JWT:JSON_Web_Token
    CDN:content_delivery_network SEO:search_engine_optimization|search_engine_optimisation
    CRM:customer_relationship_management CI:continuous_integration
    CI/CD:continuous_integration_and_continuous_deployment|continuous_integration_and_continuous_delivery|continuous_integration_and_deployment|continuous_integration_and_delivery
    SF:San_Francisco UAE:United_Arab_Emirates NZ:New_Zealand HK:Hong_Kong
    GPS:Global_Positioning_System MSG:monosodium_glutamate GMO:genetically_modified_organism
    SPF:sun_protection_factor CoQ10:coenzyme_Q10 GMAT:Graduate_Management_Admission_Test
    GRE:Graduate_Record_Examination|Graduate_Record_Examinations LSAT:Law_School_Admission_Test
    MCAT:Medical_College_Admission_Test GED:General_Educational_Development ESL:English_as_a_second_language
    PhD:doctor_of_philosophy Fed:Federal_Reserve HMRC:HM_Revenue_and_Customs|Her_Majesty's_Revenue_and_Customs
    DVLA:Driver_and_Vehicle_Licensing_Agency DBS:Disclosure_and_Barring_Service VAT:value_added_tax
    ISA:individual_savings_account UC:Universal_Credit
    LAX:Los_Angeles_International_Airport|Los_Angeles_International CDG:Charles_de_Gaulle_Airport|Charles_de_Gaulle
    DUI:driving_under_the_influence ATM:automated_teller_machine|cash_machine
    PIN:personal_identification_number SUV:sport_utility_vehicle RV:recreational_vehicle
    HVAC:heating,_ventilation_and_air_conditioning|heating_ventilation_and_air_conditioning
    LED:light-emitting_diode|light_emitting_diode USB:universal_serial_bus PDF:portable_document_format
    DPF:diesel_particulate_filter NFL:National_Football_League NBA:National_Basketball_Association
    MLB:Major_League_Baseball NHL:National_Hockey_League NGO:non-governmental_organization|non-governmental_organisation
"""
# "America" is the US but for the other Americas; "American(s)" its adjective and its people.
_AMERICA = re.compile(
    r"(?<!states of )(?<!south )(?<!north )(?<!latin )(?<!central )(?<!native )(?<!african )"
    r"\b(?:the\s+)?(america|americans?)\b",
    re.IGNORECASE,
)
_COVID = re.compile(r"\bcovid[- ]?19\b", re.IGNORECASE)  # the disease, however it is named
_ON_THE_INTERNET = re.compile(r"\b(?:on|over|through|via) (?:the )?internet\b", re.IGNORECASE)
_AMERICA_IS = {"america": "the US", "american": "US", "americans": "people in the US"}
# Units after a number: symbol:names, as regular expressions ("_" a space), the longer names first.
_UNIT_NAMES = """
    kph:kilomet(?:er|re)s?_per_hour|km/h|kmh mph:miles?_per_hour Mbps:megabits?_per_second Gbps:gigabits?_per_second
    km:kilomet(?:er|re)s? kg:kilo(?:gram)?s? mg:milligrams? mcg:micrograms? ml:millilit(?:er|re)s?
    cm:centimet(?:er|re)s? mm:millimet(?:er|re)s? l:lit(?:er|re)s? g:grams? oz:ounces? lb:lbs ft:feet|foot
    GB:gigabytes? MB:megabytes? TB:terabytes? KB:kilobytes? ms:milliseconds? GHz:gigahertz MHz:megahertz
"""
_UNIT_SYMBOLS = [entry.split(":")[0] for entry in _UNIT_NAMES.split()]
# Names that are ordinary words too ("my feet hurt"): their symbol only after a number.
_UNIT_ONLY_AFTER_A_NUMBER = frozenset({"ft"})
_UNIT_NAME = re.compile(
    r"\b(?:"
    + "|".join(
        f"({entry.partition(':')[2].replace('_', ' ')})" if symbol not in _UNIT_ONLY_AFTER_A_NUMBER else "(?!)()"
        for symbol, entry in zip(_UNIT_SYMBOLS, _UNIT_NAMES.split(), strict=True)
    )
    + r")\b",
    re.IGNORECASE,
)
_UNIT = re.compile(
    r"(\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|fifty|hundred|thousand))(\s*)(?:"
    + "|".join(f"({entry.partition(':')[2].replace('_', ' ')})" for entry in _UNIT_NAMES.split())
    + r")\b",
    re.IGNORECASE,
)
# Shortened words people type, written out (the opposite direction of the abbreviations above: these
# are words, and the long form is what the rest of the text is written in).
_SHORTHANDS = {
    "uni": "university", "info": "information", "approx": "approximately", "govt": "government",
    "dept": "department", "pic": "picture", "pics": "pictures", "hrs": "hours",
    "mins": "minutes", "avg": "average", "secs": "seconds", "yr": "year", "yrs": "years", "wk": "week",
    "wks": "weeks", "pls": "please", "plz": "please", "thx": "thanks", "b4": "before",
    "cuz": "because", "tmrw": "tomorrow", "u": "you", "ur": "your", "w/o": "without",
    "w/": "with", "ok": "okay", "whats": "what is", "hows": "how is", "wheres": "where is", "im": "I am",
    "meds": "medications", "max": "maximum", "with out": "without", "b/c": "because", "dr": "doctor",
    "corp": "corporation", "med school": "medical school", "a couple of": "2", "a fortnight": "2 weeks",
    "fortnight": "2 weeks", "appt": "appointment", "rx": "prescription", "k8s": "kubernetes",
    "repo": "repository", "repos": "repositories", "env var": "environment variable",
    "env vars": "environment variables", "config": "configuration", "abt": "about", "ppl": "people",
    "bday": "birthday", "gf": "girlfriend", "bf": "boyfriend", "vs": "versus", "thru": "through",
    "wknd": "weekend", "smth": "something", "auth": "authentication", "twice": "2 times", "thrice": "3 times",
    "js": "javascript", "ps4": "playstation 4", "ps5": "playstation 5", "alright": "okay", "vw": "volkswagen",
    "chevy": "chevrolet", "dict": "dictionary", "dicts": "dictionaries", "eli5": "in simple terms",
    "explain like im five": "explain in simple terms", "explain like i'm five": "explain in simple terms",
    "explain like im 5": "explain in simple terms", "explain like i'm 5": "explain in simple terms",
}  # fmt: skip
# Phrasal verbs said in one word, in each form: "get rid of the ants" asks what "remove the ants" asks;
# "keep my dog from barking" what "stop my dog from barking" asks. "sign in" and "sign out" stay.
_PHRASAL_VERBS = {
    "get rid of": "remove", "gets rid of": "removes", "getting rid of": "removing", "got rid of": "removed",
    "gotten rid of": "removed", "sign up": "register", "signs up": "registers", "signing up": "registering",
    "signed up": "registered",
}  # fmt: skip
_PHRASAL_VERB = re.compile(r"\b(" + "|".join(sorted(_PHRASAL_VERBS, key=len, reverse=True)) + r")\b", re.IGNORECASE)
_KEEP_FROM = re.compile(r"\b(keep|keeps|keeping|kept)\b(?=(?: \w+){1,3} from \w+ing\b)", re.IGNORECASE)
_STOP_FORM = {"keep": "stop", "keeps": "stops", "keeping": "stopping", "kept": "stopped"}
# A temperature in its spellings ("72°F", "400F", "72 degrees F", "180 ºC", "350°") is the number, "degrees"
# and the scale's name: "bake at 400F" asks what "bake at 400 degrees fahrenheit" asks ("degrees f" too). A
# letter glued
# to one digit or after a space is left ("4C hair", "grade 5 C").
_TEMPERATURE = re.compile(
    r"(\d)\s*[°º]\s*(?:([FC])(?![\w+#]))?|\b(?:degrees?|deg)\s*([FCfc])(?![\w+#])|\b(\d{2,3})([FC])(?![\w+#])"
)
_SCALES = {"F": " fahrenheit", "C": " celsius"}
# A number typed against its unit's symbol ("200mg", "2.5L", "16GB") is the number and the symbol
# ("200 mg"): the guard compares the number and reads the symbol as what it measures.
_GLUED_UNIT = re.compile(
    r"\b(\d+(?:\.\d+)?)(mg|mcg|kg|g|lbs?|oz|ml|l|km|cm|mm|ft|mi|mph|kph|kmh|gb|mb|tb|kb|gbps|mbps|ghz|mhz|hz|ms"
    r"|kwh|wh|mah|kw)\b",
    re.IGNORECASE,
)
# Greetings, thanks and fillers around a question ask nothing: "hi, quick question: how do I ...",
# "... thanks in advance", "... lol". An opener goes only before the words a question begins with, so
# that "help desk hours" keeps its "help".
_OPENER = re.compile(
    r"^\s*(?:hi|hey|hello|hiya|quick question|real quick|just curious|pls help|please help|help|ugh|hmm+|ok so"
    r"|okay so)(?: there)?\b[\s,:;!.-]*(?=(?:how|what|whats|why|when|where|which|who|can|could|should|would|will"
    r"|is|are|am|was|were|do|does|did|i|my|any|pls|please|quick|real|just|help|hi|hey)\b)",
    re.IGNORECASE,
)
_CLOSER = re.compile(
    r"[\s,.!]*\b(?:(?:thanks|thank you|thx|cheers)(?: so much| a lot| in advance)?|lol|lmao|haha"
    r"|if you (?:don'?t|do not) mind)[\s.!?]*$",
    re.IGNORECASE,
)
_CLOSING_WORD = re.compile(r"thank|thx|cheers|lol|lmao|haha|mind", re.IGNORECASE)
# "X-free" is "without X" ("dairy-free" / "without dairy"), also unhyphenated for things food and money
# are free of ("sugar free"; not "feel free").
_FREE_OF = re.compile(
    r"\b([a-z]{3,})-free\b|\b(sugar|gluten|dairy|lactose|fat|caffeine|alcohol|nut|egg|soy|meat|salt|smoke|debt"
    r"|interest|tax|rent|duty|fee|hassle|pain) free\b",
    re.IGNORECASE,
)
# A count of decades is years ("a decade old" / "10 years old", "two decades" / "20 years").
_DECADES = re.compile(r"\b(a|one|two|three|four|five|[1-9]) decades?\b", re.IGNORECASE)
# An hour of the morning or the evening said in words is the clock's ("6 in the morning" -> "6am").
_HOUR_OF_DAY = re.compile(
    r"\b(1[0-2]|[1-9]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)(?: o'?clock)?"
    r" (?:in the (morning)|in the (?:afternoon|evening)|at night)\b",
    re.IGNORECASE,
)
_NOON = re.compile(r"\bat (noon|midday|midnight)\b", re.IGNORECASE)
# A retirement plan named by its section of the tax code: "401(k)" is typed "401k" as often.
_TAX_CODE_PLAN = re.compile(r"\b(401|403|457)\(([ab]|k)\)", re.IGNORECASE)
# An age typed short ("my 3 yo", "a 5 y/o") and a count of times typed with an x ("2x a week").
_AGE_SHORT = re.compile(r"\b(\d{1,3})\s?(?:yo|y/o|y\.o\.)(?![\w/])", re.IGNORECASE)
_TIMES_SHORT = re.compile(r"\b(\d{1,3})x(?= (?:a|an|per|each|every) )", re.IGNORECASE)
# Decades in words: "the nineties" are "the 90s".
_DECADE_WORDS = {
    "twenties": "20s", "thirties": "30s", "forties": "40s", "fifties": "50s", "sixties": "60s",
    "seventies": "70s", "eighties": "80s", "nineties": "90s",
}  # fmt: skip
_DECADE = re.compile(r"\b(?:(eighteen|nineteen|twenty)[ -])?(" + "|".join(_DECADE_WORDS) + r")\b", re.IGNORECASE)
_CENTURY_DIGITS = {"eighteen": "18", "nineteen": "19", "twenty": "20"}
# A decade of the last century named by its two digits after "the" ("the 80s", "the early '90s") is
# that century's ("the 1980s"); "in my 30s" (an age) is left. Not the 20s, as often this century's.
_SHORT_DECADE = re.compile(r"\b(the|early|late|mid)([\s-]+)'?([3-9]0)'?s\b", re.IGNORECASE)
# A century by its ordinal ("the 19th century", "eighteenth-century") is its hundreds ("the 1800s").
_CENTURY_ORDINALS = {
    "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
    "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "twenty-first": 21, "twenty first": 21,
}  # fmt: skip
_CENTURY = re.compile(
    r"\b(1[1-9]|2[01])(?:st|th)[\s-]centur(?:y|ies)\b|\b(" + "|".join(_CENTURY_ORDINALS) + r")[\s-]centur(?:y|ies)\b",
    re.IGNORECASE,
)
# A time of day said in words: "half past 3" is "3:30", "quarter to 8" is "7:45" (the guard reads clocks).
_HOUR_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_CLOCK_WORDS = re.compile(
    r"\b(half|(?:a )?quarter) (past|after|to|till) (1[0-2]|[1-9]|" + "|".join(_HOUR_WORDS) + r")\b(?![:.]\d)",
    re.IGNORECASE,
)
# An amount in a small unit that is a whole number (or a half) of a larger one is written in the
# larger: "48 hours" is "2 days", "18 months" "1.5 years", "2000 g" "2 kg", "5000 metres" "5 km",
# "1000w" "1 kw", "1600cc" "1.6 l", so that one amount written in two units compares equal. Not
# where the larger unit is named too (a conversion between the two: "how many days is 48 hours"),
# nor "7 days a week". unit: (the larger unit, how many of the unit make one of it).
_LARGER_UNITS = {
    "second": ("minute", 60), "minute": ("hour", 60), "hour": ("day", 24), "day": ("week", 7),
    "month": ("year", 12), "mg": ("g", 1000), "g": ("kg", 1000), "ml": ("l", 1000), "cc": ("l", 1000),
    "metre": ("km", 1000), "meter": ("km", 1000), "w": ("kw", 1000), "watt": ("kw", 1000),
}  # fmt: skip
_UNIT_SPELLINGS = {
    "seconds": "second", "minutes": "minute", "hours": "hour", "days": "day", "months": "month",
    "metres": "metre", "meters": "meter", "watts": "watt", "hr": "hour", "hrs": "hour", "min": "minute",
    "mins": "minute", "sec": "second", "secs": "second",
}  # fmt: skip
_WORDS_WITH_PLURAL = frozenset({"second", "minute", "hour", "day", "week", "month", "year", "metre", "meter", "watt"})
_AMOUNT_WORDS = {
    **_HOUR_WORDS, "eighteen": 18, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}  # fmt: skip
# Where _AMOUNT_IN_UNITS may match at all (a cheap first look): a digit, or a unit counted in words.
_DIGIT = re.compile(r"\d")
_DURATION_WORDS = ("second", "minute", "hour", "day", "month", "metre", "meter", "watt")
_AMOUNT = r"\d+(?:\.\d+)?|(?:" + "|".join(_TENS) + r")[ -](?:" + _DIGIT_WORD + r")|" + "|".join(_AMOUNT_WORDS)
_AMOUNT_IN_UNITS = re.compile(
    rf"\b({_AMOUNT})(\s*-?\s*)(seconds?|minutes?|hours?|days?|months?|metres?|meters?|watts?|mg|g|ml|cc|w|hrs?"
    r"|mins?|secs?)\b(?! (?:a|per|each|every) week\b)",
    re.IGNORECASE,
)
_SHORTHAND = re.compile(  # not in a flag ("git push -u") nor a path
    r"(?<![\w/-])(" + "|".join(re.escape(s) for s in sorted(_SHORTHANDS, key=len, reverse=True)) + r")(?![\w/.])"
)
# The first ten ordinals written with digits are written as words ("1st" -> "first"): the words are
# what the guard reads as a rank, and "the 2nd round" is "the second round".
_ORDINAL_WORDS = {
    "1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth", "6th": "sixth",
    "7th": "seventh", "8th": "eighth", "9th": "ninth", "10th": "tenth",
}  # fmt: skip
_ORDINAL_DIGITS = re.compile(r"\b(" + "|".join(_ORDINAL_WORDS) + r")\b", re.IGNORECASE)
# "How does one ..." is "how do you ...": "one" as the impersonal pronoun, after a question word and an
# auxiliary only, where it cannot be the number ("is one tablet enough" keeps its "one").
_ONE_PRONOUN = re.compile(
    r"\b((?:how|what|where|why|when|which|who)(?: \w+)?) (does|do|can|could|should|would|must|might|may) one\b",
    re.IGNORECASE,
)
_EXPANSIONS: dict[str, str] = {}
for _entry in _ABBREVIATIONS.split():
    _short, _, _longs = _entry.partition(":")
    for _long in _longs.split("|"):
        _EXPANSIONS[_long.replace("_", " ").lower()] = _short


def _trie(words: Iterable[str]) -> str:
    """A pattern matching any of ``words``, the longest that fits first, written as a tree of their
    common prefixes: the regular-expression engine then reads each character once, where a plain
    alternation of 300 phrases tries each phrase in turn at every position."""
    root: dict[str, dict[str, Any]] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, dict[str, Any]]) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in node.items() if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(root)


_EXPANSION = re.compile(r"(?<![\w.])(" + _trie(_EXPANSIONS) + r")(?![\w])", re.IGNORECASE)

# British -ise/-yse verbs; the -ise words that are not such verbs keep their spelling.
_BRITISH_ISE = re.compile(r"\b(\w{3,})(is|ys)(e|ed|es|ing|ation|ations|er|ers)\b", re.IGNORECASE)
_ISE_WORDS = frozenset(
    [
        "advert",
        "comprom",
        "desp",
        "dev",
        "disgu",
        "enterpr",
        "exerc",
        "expert",
        "franch",
        "merchand",
        "otherw",
        "likew",
        "prem",
        "prom",
        "rev",
        "superv",
        "telev",
        "surpr",
        "adv",
        "cru",
        "pra",
        "appra",
    ]
)

# Synonyms met on one form, in each degree: (canonical base, comparative, superlative), others.
_SYNONYMS = [
    (
        ("fast", "faster", "fastest"),
        ("quick", "quicker", "quickest"),
        ("rapid", "more rapid", "most rapid"),
        ("quickly", "more quickly", "most quickly"),
    ),
    (("easy", "easier", "easiest"), ("simple", "simpler", "simplest"), ("easy", "less difficult", "least difficult")),
    (
        ("cheap", "cheaper", "cheapest"),
        ("inexpensive", "less expensive", "least expensive"),
        ("affordable", "more affordable", "most affordable"),
        ("low-cost", "lower-cost", "lowest-cost"),
    ),
    (("hard", "harder", "hardest"), ("difficult", "more difficult", "most difficult")),
    (("big", "bigger", "biggest"), ("large", "larger", "largest")),
    (("near", "nearer", "nearest"), ("near", "closer", "closest")),  # not "close": also a verb
    (("small", "smaller", "smallest"), ("tiny", "tinier", "tiniest")),
    (
        ("safe", "safer", "safest"),
        ("safe", "more safe", "most safe"),
        ("safe", "less dangerous", "least dangerous"),
        ("safe", "less risky", "least risky"),
    ),
    (("healthy", "healthier", "healthiest"), ("healthy", "more healthy", "most healthy")),
    (
        ("common", "more common", "most common"),
        ("frequent", "more frequent", "most frequent"),
        ("prevalent", "more prevalent", "most prevalent"),
    ),
    (("long", "longer", "longest"), ("lengthy", "lengthier", "lengthiest")),
    (("slow", "slower", "slowest"), ("sluggish", "more sluggish", "most sluggish")),
    (("rare", "rarer", "rarest"), ("rare", "less common", "least common")),
    (("quiet", "quieter", "quietest"), ("quiet", "less noisy", "least noisy")),
    (("expensive", "more expensive", "most expensive"), ("costly", "costlier", "costliest")),
    (("painless", "more painless", "most painless"), ("painless", "less painful", "least painful")),
]
_SYNONYM_OF = {
    variant: canonical[degree]
    for canonical, *variants in _SYNONYMS
    for forms in variants
    for degree, variant in enumerate(forms)
}
_SYNONYM = re.compile(r"\b(" + _trie(_SYNONYM_OF) + r")\b", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def normalise(text: str) -> str:
    """The prompt with the rewrites above applied; case is kept where nothing was rewritten. Cached: the
    guard and the pair verifier each read the query and its neighbours, so each text is rewritten once
    a lookup (about 0.15 ms a text otherwise)."""
    while opener := _OPENER.match(text):  # "hi, quick question: ..."
        text = text[opener.end() :]
    if _CLOSING_WORD.search(text[-24:]):  # the closer's own pattern scans the whole text
        text = _CLOSER.sub("", text)
    if "(" in text:
        text = _TAX_CODE_PLAN.sub(lambda m: m.group(1) + m.group(2).lower(), text)
    text = _AGE_SHORT.sub(lambda m: f"{m.group(1)} year old", text)
    if "x " in text or "X " in text:
        text = _TIMES_SHORT.sub(lambda m: f"{m.group(1)} times", text)
    text = _SHORTHAND.sub(lambda m: _SHORTHANDS[m.group(1)], text)
    text = _ORDINAL_DIGITS.sub(lambda m: _ORDINAL_WORDS[m.group(1).lower()], text)
    text = _DECADE.sub(_decade, text)
    if "0s" in text or "0's" in text:
        text = _SHORT_DECADE.sub(lambda m: f"{m.group(1)}{m.group(2)}19{m.group(3)}s", text)
    text = _ONE_PRONOUN.sub(lambda m: f"{m.group(1)} {'do' if m.group(2).lower() == 'does' else m.group(2)} you", text)
    text = _NEGATED_WITHOUT_APOSTROPHE.sub(lambda m: m.group(1) + "n't", text)
    text = _CANT_WONT.sub(lambda m: m.group(1) + "n't", text)
    if "able to" in text:
        text = _UNABLE.sub(lambda m: "couldn't" if (m.group(1) or "").lower() in ("was", "were") else "can't", text)
    lowered = text.lower()  # the rarer rewrites run only where their word is (each pass costs ~10 us)
    if " rid of" in lowered or "sign" in lowered:
        text = _PHRASAL_VERB.sub(lambda m: _PHRASAL_VERBS[" ".join(m.group(1).lower().split())], text)
    if "keep" in lowered or "kept" in lowered:
        text = _KEEP_FROM.sub(lambda m: _STOP_FORM[m.group(1).lower()], text)
    if "centur" in lowered:
        text = _CENTURY.sub(_century, text)
    if "half" in lowered or "quarter" in lowered:
        text = _CLOCK_WORDS.sub(_clock, text)
    if "free" in lowered:
        text = _FREE_OF.sub(lambda m: f"without {m.group(1) or m.group(2)}", text)
    if "decade" in lowered:
        text = _DECADES.sub(lambda m: f"{_count(m.group(1)) * 10} years", text)
    if any(part in lowered for part in ("morning", "afternoon", "evening", "night", "noon", "midday")):
        text = _HOUR_OF_DAY.sub(lambda m: f"{_count(m.group(1))}{'am' if m.group(2) else 'pm'}", text)
        text = _NOON.sub(lambda m: "at 12am" if m.group(1).lower() == "midnight" else "at 12pm", text)
    if "dozen" in lowered:
        text = _DOZEN.sub(_dozen, text)
    if "and a half" in lowered:
        text = _AND_A_HALF.sub(lambda m: f"{_digit(m.group(1))}.5", text)
        text = _ONE_AND_A_HALF.sub(lambda m: f"1.5 {m.group(1)}s", text)
    if "hour" in lowered:
        text = _HOUR_PARTS.sub(lambda m: "30 minutes" if m.group(1) else "15 minutes", text)
    if "nineteen" in lowered or "twenty" in lowered:
        text = _SPOKEN_YEAR.sub(_spoken_year, text)
    if "point" in lowered:
        text = _SPOKEN_DECIMAL.sub(_spoken_decimal, text)
    text = _FRACTION_DIGITS.sub(_fraction, text)
    text = _FRACTION_PHRASE.sub(lambda m: _FRACTION_VALUE[" ".join(m.group(1).lower().split())], text)
    if "°" in text or "º" in text or "F" in text or "C" in text or "degree" in lowered:
        text = _TEMPERATURE.sub(_temperature, text)
    text = _GLUED_UNIT.sub(r"\1 \2", text)
    text = _UNIT.sub(_unit, text)
    text = _UNIT_NAME.sub(lambda m: _symbol(m.groups()), text)
    if _DIGIT.search(text) or any(word in lowered for word in _DURATION_WORDS):
        text = _AMOUNT_IN_UNITS.sub(lambda m: _in_larger_unit(m, text), text)
    if "covid" in lowered:
        text = _COVID.sub("covid", text)
    if "internet" in lowered:
        text = _ON_THE_INTERNET.sub("online", text)
    if "americ" in lowered:
        text = _AMERICA.sub(lambda m: _AMERICA_IS[m.group(1).lower()], text)
    text = _BRITISH_ISE.sub(_americanise, text)  # first: "in vitro fertilisation" is the IVF
    text = _EXPANSION.sub(lambda m: _EXPANSIONS[" ".join(m.group(1).lower().split())], text)
    return _SYNONYM.sub(lambda m: _SYNONYM_OF[m.group(1).lower()], text)


def normalise_pair(first: str, second: str) -> tuple[str, str]:
    """Two prompts as the pair verifier reads them, in training and serving alike."""
    return spelling.aligned(normalise(first), normalise(second))


def _unit(match: re.Match[str]) -> str:
    """The number, its spacing and the symbol of the unit whose name matched (groups 3 on, one a unit)."""
    return match.group(1) + match.group(2) + _symbol(match.groups()[2:])


def _symbol(names: tuple[str | None, ...]) -> str:
    """The symbol of the one unit among ``names`` (a group per unit, in ``_UNIT_NAMES``' order) that matched."""
    return _UNIT_SYMBOLS[next(i for i, name in enumerate(names) if name is not None)]


def _digit(word: str) -> int:
    return int(word) if word.isdigit() else _DIGIT_WORDS[word.lower()]


def _spoken_decimal(match: re.Match[str]) -> str:
    decimals = "".join(str(_DIGIT_WORDS[word.lower()]) for word in match.group(2).split())
    return f"{_digit(match.group(1))}.{decimals}" + (" " if match.group(2).endswith(" ") else "")


def _spoken_year(match: re.Match[str]) -> str:
    century, teen, tens, unit = (group.lower() if group else None for group in match.groups())
    later = _TEENS[teen] if teen else _TENS[tens or ""] * 10 + (_DIGIT_WORDS[unit] if unit else 0)
    return str((19 if century == "nineteen" else 20) * 100 + later)


def _temperature(match: re.Match[str]) -> str:
    sign, sign_scale, words_scale, glued, glued_scale = match.groups()
    if words_scale:
        return "degrees" + _SCALES[words_scale.upper()]
    number, scale = (sign, sign_scale) if sign else (glued, glued_scale)
    return f"{number} degrees{_SCALES.get(scale or '', '')}"


def _century(match: re.Match[str]) -> str:
    number = int(match.group(1)) if match.group(1) else _CENTURY_ORDINALS[" ".join(match.group(2).lower().split())]
    return f"{(number - 1) * 100}s"


def _clock(match: re.Match[str]) -> str:
    part, relation, hour = match.group(1).lower(), match.group(2).lower(), match.group(3).lower()
    number = int(hour) if hour.isdigit() else _HOUR_WORDS[hour]
    if relation in ("to", "till"):
        return f"{number - 1 or 12}:{'30' if part == 'half' else '45'}" if part != "half" else match.group()
    return f"{number}:{'30' if part == 'half' else '15'}"


def _in_larger_unit(match: re.Match[str], text: str) -> str:
    """The amount in the largest unit of which it is a whole number (a half for a year: "6 months" is "0.5
    years"), or as written (see _LARGER_UNITS)."""
    written, spacing, unit = match.groups()
    value = float(written) if written[0].isdigit() else float(_amount(written.lower()))
    plural = unit.lower().endswith("s") and unit.lower() not in ("g", "mg", "ml", "cc", "w")
    unit = _UNIT_SPELLINGS.get(unit.lower(), unit.lower())
    converted = len(unit) > 3 and not match.group(3).lower().startswith(unit)  # "2 hr" is "2 hours"
    while unit in _LARGER_UNITS:
        larger, count = _LARGER_UNITS[unit]
        amount = value / count
        # a duration in whole or half units (a half of a year), a metric amount to one decimal
        steps = 10 if larger not in _WORDS_WITH_PLURAL else (2 if larger in ("minute", "hour", "year") else 1)
        if amount < (0.5 if larger == "year" else 1) or (amount * steps) % 1:
            break
        if re.search(rf"\b(?:in|to|into|many|much)\s+{larger}s?\b", text, re.IGNORECASE):
            break  # a conversion between the two units
        value, unit, converted = amount, larger, True
    if not converted:
        return match.group()
    ending = "s" if unit in _WORDS_WITH_PLURAL and plural and value != 1 else ""
    return f"{value:g}{spacing or ' '}{unit}{ending}"


def _count(word: str) -> int:
    """A count written in digits, as a small number word or as an article ("a decade")."""
    lowered = word.lower()
    return int(lowered) if lowered.isdigit() else 1 if lowered in ("a", "an") else _HOUR_WORDS[lowered]


def _amount(words: str) -> int:
    tens, _, unit = words.replace("-", " ").partition(" ")
    return _TENS[tens] * 10 + _DIGIT_WORDS[unit] if unit else _AMOUNT_WORDS[tens]


def _decade(match: re.Match[str]) -> str:
    century = _CENTURY_DIGITS[match.group(1).lower()] if match.group(1) else ""
    return century + _DECADE_WORDS[match.group(2).lower()]  # "the nineteen twenties" are "the 1920s"


def _dozen(match: re.Match[str]) -> str:
    count = match.group(1).lower()
    if count.isdigit():
        return str(int(count) * 12)
    return "6" if "half" in count else str(_DOZEN_COUNTS[count] * 12)


def _fraction(match: re.Match[str]) -> str:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if not 0 < numerator < denominator <= 16:
        return match.group()  # "24/7", "9/11": not a fraction
    return f"{numerator / denominator:.3f}".rstrip("0")


def _americanise(match: re.Match[str]) -> str:
    stem, middle, ending = match.groups()
    if stem.lower() in _ISE_WORDS or (middle.lower() == "is" and len(stem) < 4):
        return match.group()
    return stem + ("iz" if middle.lower() == "is" else "yz") + ending
