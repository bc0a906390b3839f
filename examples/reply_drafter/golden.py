"""Seeded generator of the reply-drafter golden set: residents' messages and what a reply owes.

No real correspondence ships with the example, so this writes plausible one-line
messages from templates per topic. Each row has the message, the resident's name,
the case reference, the topic (the slice the gate reports on) and ``expected``: a
phrase a good reply must contain, checked by the ``contains`` scorer:

- ``council-tax`` rows expect ``payment plan`` (a reply about arrears must offer one);
- other rows expect either ``reply within 10 working days`` (the reply says what
  happens next) or the row's reference (the reply quotes it), alternating
  within each topic.

The same seed gives a byte-identical CSV. Run ``python golden.py [OUT]`` to write
``golden.csv`` (next to this file by default).
"""

from __future__ import annotations

import csv
import io
import random
import sys
from collections.abc import Sequence
from pathlib import Path

COLUMNS = ("message", "resident_name", "reference", "topic", "expected")
SEED = 20261207
COUNTS = {
    "council-tax": 24,
    "housing": 16,
    "waste": 15,
    "planning": 15,
    "noise": 15,
    "benefits": 15,
}
"""Rows per topic: 100 in all, council-tax the largest slice (the one prompt v2 regresses on)."""
PREFIX = {
    "council-tax": "CT",
    "housing": "HSG",
    "waste": "WST",
    "planning": "PLN",
    "noise": "NSE",
    "benefits": "BEN",
}
NEXT_STEP_PHRASE = "reply within 10 working days"
PAYMENT_PLAN_PHRASE = "payment plan"

FIRST = (
    "Amina",
    "Tom",
    "Grace",
    "Oluwaseun",
    "Priya",
    "Gareth",
    "Mei",
    "Siobhan",
    "Callum",
    "Fatima",
    "Jan",
    "Aoife",
    "Dev",
    "Rosa",
    "Kwame",
    "Lena",
)
LAST = (
    "Patel",
    "Hughes",
    "Okafor",
    "O'Neill",
    "Novak",
    "Begum",
    "Fraser",
    "Li",
    "Kowalski",
    "Evans",
    "Mensah",
    "Ward",
    "Haddad",
    "Campbell",
)
STREETS = ("Mill Lane", "Station Road", "Church Street", "Elm Close", "Park Road", "Oakfield Way")
MONTHS = ("January", "March", "April", "June", "September", "November")
AMOUNTS = ("86.40", "212", "420", "615", "1,150")

TEMPLATES: dict[str, Sequence[str]] = {
    "council-tax": (
        "I have fallen behind on my council tax since losing my job and I owe {amount} pounds. "
        "Can I pay it off in smaller amounts?",
        "I received a reminder for {amount} pounds of council tax arrears. "
        "I cannot pay it all at once, what are my options?",
        "My council tax bill went up in {month} and I am struggling to keep up with it.",
        "I got a summons about unpaid council tax. I want to sort this out before it goes further.",
        "Since my partner moved out I pay the whole council tax on my own at {house} {street}. "
        "Can the instalments be spread out?",
        "I missed two council tax instalments after my hours were cut. How do I catch up?",
    ),
    "housing": (
        "There is black mould in the bedroom of my flat at {house} {street} and it is getting "
        "worse.",
        "The boiler has not worked for two weeks and I have a young child at home.",
        "I reported a leak in the kitchen ceiling in {month} and nobody has come to fix it.",
        "I have been given notice to leave my home on {street} and need help finding somewhere.",
        "The front door lock is broken and I do not feel safe at {house} {street}.",
    ),
    "waste": (
        "My bin on {street} was not collected on Tuesday for the second week running.",
        "Someone has dumped a mattress and bags of rubbish at the end of {street}.",
        "I need a new recycling box, the old one was taken with the rubbish.",
        "The garden waste collection missed my road again, is the service still running?",
        "Can I book a bulky waste collection for an old sofa and a fridge?",
    ),
    "planning": (
        "My neighbour at {house} {street} is building an extension that blocks my light. "
        "Did they get permission?",
        "I want to object to the planning application for flats on {street}.",
        "Do I need planning permission to put a garden room at the back of my house?",
        "I submitted an application in {month} and have heard nothing since.",
        "A tree with a preservation order on {street} is being cut down right now.",
    ),
    "noise": (
        "The flat above me on {street} plays loud music until 3 in the morning most nights.",
        "A dog on {street} barks all day while its owners are at work.",
        "Building work next door starts at 6am, even on Sundays.",
        "There are parties every weekend at {house} {street} and I cannot sleep.",
        "An alarm at a shop on {street} has been ringing on and off since {month}.",
    ),
    "benefits": (
        "My housing benefit stopped in {month} and I do not know why.",
        "I applied for council tax support three weeks ago and have not heard back.",
        "I have moved to {house} {street}. How do I tell you so my benefit continues?",
        "I was overpaid housing benefit and now I am asked to repay {amount} pounds.",
        "Can I get help with my rent while I wait for Universal Credit?",
    ),
}


def rows(seed: int = SEED) -> list[dict[str, str]]:
    """The golden rows for ``seed``, in a shuffled but reproducible order."""
    rng = random.Random(seed)
    topics = [topic for topic, count in COUNTS.items() for _ in range(count)]
    rng.shuffle(topics)
    used: set[str] = set()
    out: list[dict[str, str]] = []
    alternate = dict.fromkeys(COUNTS, 0)
    for topic in topics:
        template = rng.choice(TEMPLATES[topic])
        message = template.format(
            amount=rng.choice(AMOUNTS),
            month=rng.choice(MONTHS),
            street=rng.choice(STREETS),
            house=rng.randint(2, 140),
        )
        reference = ""
        while not reference or reference in used:
            reference = f"{PREFIX[topic]}-{rng.randint(100000, 999999)}"
        used.add(reference)
        if topic == "council-tax":
            expected = PAYMENT_PLAN_PHRASE
        else:
            expected = NEXT_STEP_PHRASE if alternate[topic] % 2 == 0 else reference
            alternate[topic] += 1
        out.append(
            {
                "message": message,
                "resident_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "reference": reference,
                "topic": topic,
                "expected": expected,
            }
        )
    return out


def to_csv(table: Sequence[dict[str, str]]) -> str:
    """The rows as CSV text with a header and ``\\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def main(argv: Sequence[str]) -> None:
    """Write the golden CSV to ``argv[0]`` (default: golden.csv next to this file)."""
    out = Path(argv[0]) if argv else Path(__file__).with_name("golden.csv")
    out.write_text(to_csv(rows()), encoding="utf-8", newline="")
    print(f"wrote {len(rows())} rows to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
