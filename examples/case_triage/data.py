"""Seeded generator of council casework for the case-triage example.

No real data ships with the example, so this writes plausible short case texts
from templates with varied phrasing. Each row has the text, the channel it came
in on, the user group of the sender and the queue a caseworker filed it under.

The task is deliberately not trivial: some cases carry sentences that point at
another queue (a tenant on benefits complaining about noise), and a few labels
are wrong, as they are in any hand-labelled set. A good model scores roughly
0.85-0.95, not 1.0.

Run ``python data.py OUT_DIR`` to write ``golden.csv`` and ``train.csv``.
"""

from __future__ import annotations

import csv
import random
import sys
from collections.abc import Sequence
from pathlib import Path

QUEUES = ("housing", "benefits", "waste", "noise", "council-tax", "planning")
CHANNELS = ("email", "phone", "web")
USER_GROUPS = ("public", "staff", "pilot-councils")
COLUMNS = ("case_id", "text", "channel", "user_group", "queue")

GOLDEN_SEED = 20240601
TRAIN_SEED = 20240415
GOLDEN_ROWS = 600
TRAIN_ROWS = 2000
LABEL_NOISE = 0.07
"""Share of rows filed under a wrong queue, as happens with hand-labelled casework."""

SLOTS: dict[str, Sequence[str]] = {
    "street": (
        "Mill Lane",
        "Station Road",
        "Church Street",
        "Victoria Avenue",
        "Elm Close",
        "Park Road",
        "Queens Drive",
        "Harbour View",
        "Oakfield Way",
        "the High Street",
    ),
    "house": ("12", "4a", "Flat 3,", "27", "Flat 11,", "88", "2", "Flat 6b,", "140", "9"),
    "duration": (
        "two weeks",
        "a month",
        "three months",
        "six weeks",
        "over a year",
        "ten days",
        "since Christmas",
        "nearly two months",
    ),
    "month": ("January", "March", "April", "June", "September", "November"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    "date": ("the 3rd", "the 14th", "the end of the month", "next Friday", "the 28th"),
    "time": ("2am", "3 in the morning", "midnight", "1am", "4am", "after 11pm"),
    "ref": ("HB-204418", "CT 7731902", "10034527", "REF 55128", "A/88213", "CTR-0091"),
    "app_ref": ("24/01187/FUL", "23/00452/HOU", "24/00311/OUT", "22/02219/FUL", "24/00790/LBC"),
    "amount": ("420", "1,150", "86.40", "2,300", "615"),
    "room": ("bedroom", "bathroom", "kitchen", "children's bedroom", "living room"),
    "damp": ("black mould", "damp", "condensation and mould", "a leak", "rising damp"),
    "fixture": (
        "boiler",
        "heating",
        "front door lock",
        "bathroom window",
        "toilet",
        "roof",
        "hot water",
        "kitchen ceiling",
    ),
    "household": (
        "two young children",
        "a disabled son",
        "my elderly mother",
        "a newborn",
        "three kids",
        "my partner who has asthma",
    ),
    "bin": ("recycling", "general waste", "food waste", "garden waste", "blue", "green"),
    "items": (
        "an old sofa",
        "a fridge freezer",
        "mattresses",
        "builders rubble",
        "black bags of rubbish",
        "a broken wardrobe",
        "tyres",
    ),
    "structure": (
        "two storey extension",
        "garage",
        "high fence",
        "dormer loft conversion",
        "outbuilding",
        "front wall",
    ),
    "development": (
        "block of flats",
        "drive-through restaurant",
        "housing estate",
        "phone mast",
        "warehouse",
    ),
    "band": ("A", "B", "C", "D", "E"),
    "child": ("daughter", "son", "two children", "youngest"),
    "name": ("Sam", "J. Patel", "Maria", "D. Okafor", "Chris", "A. Nowak", "Bev"),
}

TEMPLATES: dict[str, Sequence[str]] = {
    "housing": (
        "There is {damp} in my {room} and it keeps getting worse. I reported it to the "
        "housing office {duration} ago and nobody has come out.",
        "The {fixture} in our council flat has been broken for {duration}. I have "
        "{household} and we need it fixed urgently.",
        "I am being evicted from my private rented flat on {street} and need help "
        "finding somewhere to live before {date}.",
        "Can we be added to the housing register? We are a family with {household} "
        "living in a one bedroom flat.",
        "Our housing association still has not repaired the {fixture} since {month}. "
        "Water is coming through.",
        "I have been sofa surfing and have nowhere to stay from next week. Is there "
        "emergency accommodation?",
        "My landlord is threatening to change the locks and will not return my deposit.",
        "Repair request: {fixture} not working at {house} {street}, tenant has {household}.",
    ),
    "benefits": (
        "My housing benefit has stopped and I do not know why. My claim reference is {ref}.",
        "I have been asked to repay an overpayment of £{amount} but I cannot afford it.",
        "Can I apply for free school meals and the school uniform grant for my {child}?",
        "I started a new job on {date} and need to report a change of circumstances on my claim.",
        "I need a discretionary housing payment because my rent has gone up and my "
        "Universal Credit does not cover it.",
        "I have no money for food or electricity until my next payment. Can I get a "
        "crisis grant from the welfare fund?",
        "I applied for council tax support {duration} ago and still have not heard back "
        "about my claim.",
        "My Universal Credit housing element was cut and now I am behind on rent.",
    ),
    "waste": (
        "My {bin} bin was not collected on {day}. It is still out on the pavement at "
        "{house} {street}.",
        "Someone has dumped {items} in the alley behind {street}.",
        "I would like to book a bulky waste collection for {items}.",
        "Can I order a replacement {bin} bin? Ours was taken by the wind and never came back.",
        "The recycling crew left broken glass all over the road on {street} this {day}.",
        "Missed {bin} collection again this week, the third time since {month}.",
        "Fly-tipping on the verge by {street}: {items} left there for {duration}.",
        "Our street has not had a bin collection for {duration} and the bags are piling up.",
    ),
    "noise": (
        "My neighbour plays loud music until {time} every night and I cannot sleep.",
        "The dog next door barks for hours every day while the owners are at work.",
        "There is a party at {house} {street} every weekend with shouting until {time}.",
        "The pub on {street} has live music with the doors open until {time}.",
        "Drilling and banging from the building work next door starts at 7am, even on Sundays.",
        "A burglar alarm has been ringing at the unit on {street} for {duration}.",
        "The people upstairs stomp and shout all night and it goes on until {time}.",
        "Loud bass from a car parked on {street} every evening, going on until {time}.",
    ),
    "council-tax": (
        "I moved out of {house} {street} on {date} and need to close my council tax account.",
        "Why has my council tax bill gone up? I live alone and should get the single "
        "person discount.",
        "I received a summons for unpaid council tax but I pay by direct debit every month.",
        "Please change my council tax direct debit to {date} of the month. Account {ref}.",
        "My house should be in band {band}, not band {band}. How do I appeal the valuation?",
        "I am a full-time student and should be exempt from council tax. Account number {ref}.",
        "Can I pay my council tax arrears in instalments? I have fallen behind since {month}.",
        "I have been charged council tax twice for {month} on account {ref}.",
    ),
    "planning": (
        "My neighbour is building a {structure} without planning permission.",
        "I want to object to planning application {app_ref} for a {development} on {street}.",
        "Do I need planning permission for a {structure} at the back of my house?",
        "What is happening with planning application {app_ref}? It went in {duration} ago.",
        "A protected tree on {street} is being cut down by the developer.",
        "Is {street} in a conservation area? We want to replace the front windows.",
        "The new {development} on {street} is much taller than the approved plans.",
        "Enforcement complaint: {structure} built at {house} {street} does not match the "
        "approved drawings.",
    ),
}

# Sentences that mention another queue's subject without changing where the case goes:
# they are what makes the task realistic rather than a keyword lookup.
CROSS_TALK: dict[str, Sequence[str]] = {
    "housing": (
        "I rent from the council.",
        "We live in a housing association flat.",
        "My landlord never answers the phone.",
    ),
    "benefits": (
        "I am on Universal Credit.",
        "I get housing benefit.",
        "Money is very tight at the moment.",
    ),
    "waste": (
        "The bins outside are always overflowing too.",
        "There is also rubbish piling up by the entrance.",
    ),
    "noise": ("The neighbours are very noisy as well.", "It is hard to sleep here."),
    "council-tax": ("I always pay my council tax on time.", "I pay council tax in band {band}."),
    "planning": (
        "They also built a big extension last year.",
        "The building site next door does not help.",
    ),
}
CROSS_TALK_RATE = 0.35

OPENERS = {
    "email": ("Hello,", "Dear Sir or Madam,", "Hi,", "Good morning,", "To whom it may concern,"),
    "phone": ("Caller says:", "Resident rang to report:", "Phone call:", "Customer called -"),
    "web": ("", "", "Online form:", "Report:"),
}
CLOSERS = {
    "email": (
        "Thanks, {name}",
        "Kind regards, {name}",
        "Please get back to me. {name}",
        "Regards",
        "Thank you",
    ),
    "phone": ("Asked for a call back.", "Advised we would be in touch.", "", "Caller upset."),
    "web": ("", "", "Please reply by email.", "Thanks"),
}
STAFF_PREFIXES = ("Internal referral:", "Passed on from reception:", "Logged by contact centre:")
PILOT_PREFIXES = ("[Northvale pilot]", "[Eastmere pilot]", "[pilot]")


def _fill(template: str, rng: random.Random) -> str:
    """Replace every ``{slot}`` independently, so repeated slots can differ."""
    out = template
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        out = out[:start] + rng.choice(SLOTS[out[start + 1 : end]]) + out[end + 1 :]
    return out


def _typo(text: str, rng: random.Random) -> str:
    """Swap two letters in one longer word, as hurried typing does."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 5 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def case_text(queue: str, channel: str, user_group: str, rng: random.Random) -> str:
    """One case text for ``queue`` as it would arrive through ``channel``."""
    parts = [_fill(rng.choice(TEMPLATES[queue]), rng)]
    if rng.random() < CROSS_TALK_RATE:
        other = rng.choice([q for q in QUEUES if q != queue])
        extra = _fill(rng.choice(CROSS_TALK[other]), rng)
        parts.insert(rng.randrange(0, 2), extra)
    opener = rng.choice(OPENERS[channel])
    closer = _fill(rng.choice(CLOSERS[channel]), rng)
    text = " ".join(p for p in (opener, *parts, closer) if p)
    if user_group == "staff":
        text = f"{rng.choice(STAFF_PREFIXES)} {text}"
    elif user_group == "pilot-councils":
        text = f"{rng.choice(PILOT_PREFIXES)} {text}"
    if channel == "web" and rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.15:
        text = _typo(text, rng)
    return text


def generate(n: int, *, seed: int, label_noise: float = LABEL_NOISE) -> list[dict[str, str]]:
    """``n`` rows of casework, the same for the same seed."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for i in range(n):
        queue = rng.choices(QUEUES, weights=(26, 20, 18, 14, 14, 8))[0]
        channel = rng.choices(CHANNELS, weights=(40, 25, 35))[0]
        user_group = rng.choices(USER_GROUPS, weights=(70, 20, 10))[0]
        text = case_text(queue, channel, user_group, rng)
        label = queue
        if rng.random() < label_noise:
            label = rng.choice([q for q in QUEUES if q != queue])
        rows.append(
            {
                "case_id": f"CT-{seed % 10000:04d}-{i:05d}",
                "text": text,
                "channel": channel,
                "user_group": user_group,
                "queue": label,
            }
        )
    return rows


def golden_rows() -> list[dict[str, str]]:
    """The golden evaluation set (600 rows)."""
    return generate(GOLDEN_ROWS, seed=GOLDEN_SEED)


def training_rows() -> list[dict[str, str]]:
    """The training set (2,000 rows), drawn with a different seed from the golden set."""
    return generate(TRAIN_ROWS, seed=TRAIN_SEED)


def write_csv(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """Write ``rows`` as CSV with a header; the bytes depend only on the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read rows written by :func:`write_csv`."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def main(argv: Sequence[str]) -> int:
    """Write ``golden.csv`` and ``train.csv`` into the folder given (default ``data``)."""
    out = Path(argv[0]) if argv else Path("data")
    write_csv(out / "golden.csv", golden_rows())
    write_csv(out / "train.csv", training_rows())
    print(f"wrote {out / 'golden.csv'} ({GOLDEN_ROWS} rows) and {out / 'train.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
