"""A generated named-entity task, the embedded default of ``rnnlab train tag``: no files, no downloads.

Real tagged corpora do not ship with Python, so this one is generated, small, and built to need what a real
NER tagger needs:

- sentences from 48 templates (news-like: who went where, which organisation did what, when), with entities
  PER, LOC, ORG and DATE, tagged BIO; multi-token entities ("San Francisco", "Bank of Lisbon", "3 March 2011");
- context decides the type: many words are both a person's name and a place (Jordan, Sydney, Madison,
  Florence...), so "Jordan said" is PER and "flew to Jordan" is LOC; an ORG may contain a place ("Bank of
  Lisbon" is one ORG, not a LOC);
- the test split uses names that never occur in training (a seeded quarter of every name list is held out),
  so only the spelling (capital letters, suffixes like "-son" or "Corp") and the context find them: this is
  where character features matter. Sentences start with a capital letter, so case alone is not enough.

``generate(n, split, seed)`` -> sentences; ``train``/``valid`` draw from the training names, ``test`` from the
held-out ones.
"""
from __future__ import annotations

import random
from typing import Literal

from .conll import Sentence

SPLITS = ("train", "valid", "test")

# Words that are both given names and places: only the context tells them apart.
AMBIGUOUS = ["Jordan", "Sydney", "Madison", "Florence", "Austin", "Chelsea", "Victoria", "Lincoln", "Georgia",
             "Charlotte", "Dallas", "Savannah", "Phoenix", "Paris", "Regina", "Eugene", "Marion", "Troy", "Salem",
             "Adelaide", "Orlando", "Denver", "Kent", "Jackson"]
FIRST = ["Anna", "Peter", "Maria", "John", "Olga", "Ahmed", "Li", "Fatima", "Carlos", "Ingrid", "Kofi", "Yuki",
         "Hans", "Sofia", "Ravi", "Elena", "Tomas", "Aisha", "Pablo", "Mei", "Lars", "Nadia", "Omar", "Greta",
         "Ivan", "Chloe", "Mateo", "Priya", "Kenji", "Leila", "Bruno", "Hana", "Oscar", "Zara", "Felix", "Amara",
         "Dmitri", "Lucia", "Emeka", "Astrid", "Rafael", "Noor", "Stefan", "Imani", "Hugo", "Alina", "Tariq",
         "Beatriz", "Jonas", "Keiko", "Marco", "Sana", "Viktor", "Elif", "Diego", "Ayla", "Nikolai", "Rosa",
         "Samuel", "Wen", "Gustav", "Leona", "Malik", "Irene", "Anton", "Yara", "Theo", "Mira", "Luis", "Ines"]
LAST = ["Smith", "Garcia", "Mueller", "Rossi", "Kowalski", "Tanaka", "Okafor", "Novak", "Silva", "Johansson",
        "Dubois", "Petrov", "Nakamura", "Haddad", "Fischer", "Moreau", "Jensen", "Kim", "Costa", "Ivanova",
        "Lindqvist", "Mensah", "Papadopoulos", "Schneider", "Yilmaz", "Hernandez", "Bianchi", "Andersen", "Wagner",
        "Nguyen", "Kaur", "Lopez", "Sato", "Horvat", "Richter", "Okonkwo", "Larsen", "Ferrari", "Castillo",
        "Berg", "Novotny", "Suzuki", "Abara", "Weber", "Marino", "Eriksson", "Popescu", "Hoffmann", "Duarte",
        "Kovacs", "Morales", "Lund", "Takahashi", "Adeyemi", "Vogel", "Romano", "Nilsson", "Stein", "Ortega",
        "Dimitrov", "Watanabe", "Ito", "Baptiste", "Carlsson", "Hansen", "Keller", "Santos", "Wolff"]
CITIES = ["Lisbon", "Berlin", "Toronto", "Nairobi", "Osaka", "Lima", "Oslo", "Cairo", "Madrid", "Seoul", "Dublin",
          "Prague", "Vienna", "Athens", "Hanoi", "Quito", "Lagos", "Zurich", "Krakow", "Bergen", "Mumbai", "Perth",
          "Geneva", "Tunis", "Accra", "Manila", "Porto", "Turin", "Leeds", "Utrecht", "Dakar", "Bogota", "Santiago",
          "Helsinki", "Riga", "Tallinn", "Minsk", "Naples", "Seville", "Glasgow", "Hamburg",
          "Munich", "Lyon", "Marseille", "Antwerp", "Gdansk", "Kyoto", "Busan", "Chennai", "Karachi", "Tehran",
          "New York", "San Francisco", "Buenos Aires", "Hong Kong", "Los Angeles", "Cape Town", "New Delhi",
          "Rio de Janeiro", "Kuala Lumpur", "Tel Aviv", "Salt Lake City", "Abu Dhabi"]
COUNTRIES = ["France", "Kenya", "Peru", "Norway", "Japan", "Egypt", "Chile", "Poland", "Brazil", "Canada",
             "Ghana", "India", "Spain", "Italy", "Mexico", "Sweden", "Turkey", "Vietnam", "Nigeria", "Austria",
             "Greece", "Portugal", "Finland", "Morocco", "Argentina", "Indonesia", "South Africa", "New Zealand",
             "Sri Lanka", "Costa Rica"]
ORG_STEMS = ["Acme", "Globex", "Initech", "Umbrella", "Vandelay", "Stark", "Tyrell", "Cyberdyne", "Soylent",
             "Hooli", "Wonka", "Oscorp", "Nakatomi", "Gringotts", "Monarch", "Zenith", "Apex", "Polaris", "Vertex",
             "Helios", "Orion", "Nimbus", "Quantum", "Sterling", "Redwood", "Bluefin", "Ironclad", "Northwind",
             "Silverline", "Brightwater", "Falcon", "Granite", "Horizon", "Keystone", "Lumen", "Meridian"]
ORG_SUFFIXES = ["Corp", "Inc", "Group", "Holdings", "Airlines", "Bank", "Motors", "Labs", "Energy", "Media"]
ACRONYMS = ["IBM", "NATO", "UNESCO", "FIFA", "OPEC", "NASA", "BBC", "WHO", "IMF", "UEFA", "CERN", "ESA"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# {PER} {LOC} {ORG} {DATE} are entities; every other word is O. A trailing " ." etc. is part of the template.
TEMPLATES = [
    "{PER} said on {DATE} that the plan would go ahead .",
    "{PER} flew to {LOC} on {DATE} .",
    "{PER} was born in {LOC} in {DATE} .",
    "the mayor of {LOC} , {PER} , opened the new bridge .",
    "{ORG} opened an office in {LOC} last week .",
    "shares of {ORG} fell sharply on {DATE} .",
    "{PER} , the chief executive of {ORG} , resigned on {DATE} .",
    "police in {LOC} arrested two men on {DATE} .",
    "{PER} met {PER} in {LOC} to discuss the deal .",
    "{ORG} and {ORG} agreed to merge .",
    "a spokesman for {ORG} declined to comment .",
    "{PER} will visit {LOC} and {LOC} next month .",
    "the talks in {LOC} ended without agreement on {DATE} .",
    "{PER} joined {ORG} as a senior engineer in {DATE} .",
    "thousands of people marched through {LOC} on {DATE} .",
    "{ORG} reported a loss for the quarter ending in {DATE} .",
    "according to {PER} , prices in {LOC} rose by ten percent .",
    "{PER} thanked the people of {LOC} .",
    "the government of {LOC} signed a treaty with {LOC} .",
    "{PER} scored twice as {LOC} beat {LOC} .",
    "{ORG} hired {PER} to run its office in {LOC} .",
    "heavy rain hit {LOC} on {DATE} , closing schools .",
    "{PER} told reporters in {LOC} that {ORG} would cut jobs .",
    "the museum in {LOC} will reopen on {DATE} .",
    "{PER} and {PER} won the award .",
    "{ORG} sued {ORG} over a patent .",
    "investors in {LOC} welcomed the news from {ORG} .",
    "{PER} moved to {LOC} with her family .",
    "{PER} lived in {LOC} until {DATE} .",
    "on {DATE} , {PER} announced her retirement .",
    "on {DATE} , {ORG} launched a new satellite .",
    "flights between {LOC} and {LOC} were cancelled .",
    "{PER} , a lawyer from {LOC} , denied the charges .",
    "the report by {ORG} was published on {DATE} .",
    "a delegation from {ORG} arrived in {LOC} .",
    "{PER} was elected president of {ORG} .",
    "{PER} praised {PER} for her work in {LOC} .",
    "the festival in {LOC} attracted many visitors .",
    "workers at {ORG} went on strike on {DATE} .",
    "{PER} wrote a book about {LOC} .",
    "the embassy of {LOC} in {LOC} was closed .",
    "{PER} says {ORG} will invest in {LOC} .",
    "I spoke to {PER} yesterday .",
    "we drove from {LOC} to {LOC} .",
    "{PER} asked {PER} to call back .",
    "the new stadium in {LOC} cost millions .",
    "ask {PER} about the meeting with {ORG} .",
    "{ORG} bought a factory near {LOC} .",
]


class _Names:
    """The name lists of one side of the split: train (three quarters of each list) or test (the rest)."""

    def __init__(self, side: Literal["train", "test"], seed: int) -> None:
        rng = random.Random(seed)

        def part(items: list) -> list:
            items = sorted(items)
            rng.shuffle(items)
            cut = len(items) // 4
            return items[cut:] if side == "train" else items[:cut]

        ambiguous = part(AMBIGUOUS)
        self.first = part(FIRST) + ambiguous
        self.last = part(LAST) + ambiguous[::2]
        self.places = part(CITIES) + part(COUNTRIES) + ambiguous
        self.org_stems = part(ORG_STEMS)
        self.acronyms = part(ACRONYMS)

    def entity(self, kind: str, rng: random.Random) -> list[str]:
        if kind == "PER":
            r = rng.random()
            if r < 0.45:
                return [rng.choice(self.first), rng.choice(self.last)]
            if r < 0.6:
                return [rng.choice(self.first)]
            if r < 0.8:
                return [rng.choice(["Mr", "Ms", "Dr"]), rng.choice(self.last)]
            return [rng.choice(self.last)]
        if kind == "LOC":
            return rng.choice(self.places).split()
        if kind == "ORG":
            r = rng.random()
            if r < 0.5:
                return [rng.choice(self.org_stems), rng.choice(ORG_SUFFIXES)]
            if r < 0.65:
                return [rng.choice(["Bank", "University", "Port"]), "of", *rng.choice(self.places).split()]
            if r < 0.8:
                return [rng.choice(self.acronyms)]
            return [rng.choice(self.org_stems)]
        # DATE
        r = rng.random()
        year = str(rng.randint(1950, 2030))
        if r < 0.3:
            return [rng.choice(MONTHS), str(rng.randint(1, 28))]
        if r < 0.55:
            return [str(rng.randint(1, 28)), rng.choice(MONTHS), year]
        if r < 0.7:
            return [rng.choice(MONTHS), year]
        if r < 0.85:
            return [rng.choice(WEEKDAYS)]
        return [year]


def generate(n: int, split: Literal["train", "valid", "test"] = "train", *, seed: int = 0) -> list[Sentence]:
    """``n`` BIO-tagged sentences; ``test`` uses only names held out from ``train`` and ``valid``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    names = _Names("test" if split == "test" else "train", seed)
    rng = random.Random(f"{seed}/{split}")
    sentences = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for word in rng.choice(TEMPLATES).split():
            if word.startswith("{") and word.endswith("}"):
                kind = word[1:-1]
                entity = names.entity(kind, rng)
                tokens += entity
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1)
            else:
                tokens.append(word)
                tags.append("O")
        tokens[0] = tokens[0][0].upper() + tokens[0][1:]
        sentences.append(Sentence(tuple(tokens), tuple(tags), tuple(range(1, len(tokens) + 1))))
    return sentences
