"""The translation task's embedded data set: dates written in many styles -> the ISO form (YYYY-MM-DD).

A generated task with real structure and nothing to download: the source spells one calendar date in one of
:data:`STYLES` (words, ordinals, abbreviations, numeric with slashes or dots), the target is always ISO 8601:

    the twenty-third of March, nineteen ninety  ->  1990-03-23
    March 23rd 1990                             ->  1990-03-23
    23/03/1990                                  ->  1990-03-23

A model must read numbers in words ("nineteen oh five" = 1905, "two thousand twelve" = 2012), month names and
their abbreviations, and reorder the fields. The calendar dates themselves are split into disjoint train,
validation and test pools (a seeded shuffle of every day from 1900 to 2099), so the test set holds only dates
the model never saw, in any style.
"""
from __future__ import annotations

import datetime
import functools
import random
from collections.abc import Callable
from typing import Literal

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}

FIRST_YEAR, LAST_YEAR = 1900, 2099
Split = Literal["train", "valid", "test"]


def number_words(n: int) -> str:
    """0..99 in words: 23 -> 'twenty-three'."""
    if not 0 <= n < 100:
        raise ValueError(f"number_words takes 0..99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else "-" + _ONES[ones])


def ordinal_words(n: int) -> str:
    """1..31 as an ordinal in words: 23 -> 'twenty-third', 20 -> 'twentieth'."""
    words = number_words(n)
    head, _, last = words.rpartition("-")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}-{last}" if head else last


def ordinal_suffix(n: int) -> str:
    """23 -> '23rd', 11 -> '11th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def year_words(year: int) -> str:
    """As people say years: 1990 'nineteen ninety', 1905 'nineteen oh five', 1900 'nineteen hundred',
    2000 'two thousand', 2007 'two thousand seven', 2016 'twenty sixteen'."""
    century, rest = divmod(year, 100)
    if year == 2000 or 2000 < year < 2010:
        return "two thousand" + ("" if rest == 0 else " " + number_words(rest))
    if rest == 0:
        return f"{number_words(century)} hundred"
    return f"{number_words(century)} {'oh ' + number_words(rest) if rest < 10 else number_words(rest)}"


def _words_of(d: datetime.date) -> str:
    return f"the {ordinal_words(d.day)} of {MONTHS[d.month - 1]}, {year_words(d.year)}"


STYLES: dict[str, Callable[[datetime.date], str]] = {
    "the-ordinal-of-month-words": _words_of,  # the twenty-third of March, nineteen ninety
    "month-ordinal-words": lambda d: f"{MONTHS[d.month - 1].lower()} {ordinal_words(d.day)}, {year_words(d.year)}",
    "month-suffix": lambda d: f"{MONTHS[d.month - 1]} {ordinal_suffix(d.day)} {d.year}",  # March 23rd 1990
    "day-month-year": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",  # 23 March 1990
    "abbreviated": lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",  # Mar 23, 1990
    "slashes": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",  # 23/03/1990
    "dots": lambda d: f"{d.day}.{d.month}.{d.year}",  # 23.3.1990
}


def iso(d: datetime.date) -> str:
    return d.isoformat()  # 1990-03-23


@functools.lru_cache(maxsize=4)
def _pools(seed: int) -> dict[str, tuple[datetime.date, ...]]:
    """Every day of FIRST_YEAR..LAST_YEAR shuffled by ``seed``: 10% test, 5% validation, the rest training."""
    first, last = datetime.date(FIRST_YEAR, 1, 1), datetime.date(LAST_YEAR, 12, 31)
    days = [first + datetime.timedelta(days=i) for i in range((last - first).days + 1)]
    random.Random(seed).shuffle(days)
    n_test, n_valid = len(days) // 10, len(days) // 20
    return {"test": tuple(days[:n_test]), "valid": tuple(days[n_test:n_test + n_valid]),
            "train": tuple(days[n_test + n_valid:])}


def date_pairs(n: int, split: Split = "train", *, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (source, target) pairs: dates of the ``split`` pool (disjoint from the others' for the same
    ``seed``), each in a random style of :data:`STYLES`, paired with its ISO form."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of date pairs must be a positive integer, got {n!r}")
    pools = _pools(seed)
    if split not in pools:
        raise ValueError(f"split must be one of {tuple(pools)}, got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    pool, styles = pools[split], list(STYLES.values())
    return [(style(day), iso(day)) for day, style in ((rng.choice(pool), rng.choice(styles)) for _ in range(n))]
