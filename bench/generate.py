"""Seeded generator of messy contact CSV exports for the benchmarks.

The file looks like a real CRM export: mixed phone formats (national, dotted, bracketed, ``+1``,
international), ~10% rows repeating an earlier row's number in another format, ~2% invalid and ~1%
empty phones, quoted fields with commas, ~1% addresses with an embedded newline, non-ASCII names.
Every valid-looking number is drawn from prefixes that phonenumbers accepts at generation time,
so the share of valid numbers is decided here, not by accident of the number plan.

    python -m bench.generate --rows 1000000 --seed 20240601 --out bench/data/contacts_1m.csv
"""

from __future__ import annotations

import argparse
import csv
import time
import unicodedata
from pathlib import Path

import numpy as np
import phonenumbers

HEADER = ["First Name", "Last Name", "Email", "Phone", "Address", "City", "State", "Zip", "Lead Source"]

# Shares of rows by phone kind; the rest are fresh valid numbers.
EMPTY_SHARE = 0.01
INVALID_SHARE = 0.02
DUPLICATE_SHARE = 0.10
INTERNATIONAL_SHARE = 0.05  # of the fresh numbers
NEWLINE_ADDRESS_SHARE = 0.01
COMMA_ADDRESS_SHARE = 0.05
EMPTY_EMAIL_SHARE = 0.05
EMOJI_NAME_SHARE = 0.0005
# Exchanges drawn per area code: 306 area codes x 40 exchanges x 10,000 lines leaves room for
# millions of distinct numbers, so accidental repeats stay far below the planted 10%.
EXCHANGES_PER_AREA_CODE = 40

# Real North American area codes (US and a few Canadian), all assigned.
AREA_CODES = [
    "201",
    "202",
    "203",
    "205",
    "206",
    "207",
    "208",
    "209",
    "210",
    "212",
    "213",
    "214",
    "215",
    "216",
    "217",
    "218",
    "219",
    "224",
    "225",
    "228",
    "229",
    "231",
    "234",
    "239",
    "240",
    "248",
    "251",
    "252",
    "253",
    "254",
    "256",
    "260",
    "262",
    "267",
    "269",
    "270",
    "272",
    "276",
    "281",
    "301",
    "302",
    "303",
    "304",
    "305",
    "307",
    "308",
    "309",
    "310",
    "312",
    "313",
    "314",
    "315",
    "316",
    "317",
    "318",
    "319",
    "320",
    "321",
    "323",
    "325",
    "330",
    "331",
    "334",
    "336",
    "337",
    "339",
    "347",
    "351",
    "352",
    "360",
    "361",
    "364",
    "380",
    "385",
    "386",
    "401",
    "402",
    "404",
    "405",
    "406",
    "407",
    "408",
    "409",
    "410",
    "412",
    "413",
    "414",
    "415",
    "416",
    "417",
    "419",
    "423",
    "424",
    "425",
    "430",
    "432",
    "434",
    "435",
    "440",
    "442",
    "443",
    "458",
    "463",
    "469",
    "470",
    "475",
    "478",
    "479",
    "480",
    "484",
    "501",
    "502",
    "503",
    "504",
    "505",
    "507",
    "508",
    "509",
    "510",
    "512",
    "513",
    "514",
    "515",
    "516",
    "517",
    "518",
    "520",
    "530",
    "531",
    "534",
    "539",
    "540",
    "541",
    "551",
    "559",
    "561",
    "562",
    "563",
    "564",
    "567",
    "570",
    "571",
    "573",
    "574",
    "575",
    "580",
    "585",
    "586",
    "601",
    "602",
    "603",
    "604",
    "605",
    "606",
    "607",
    "608",
    "609",
    "610",
    "612",
    "614",
    "615",
    "616",
    "617",
    "618",
    "619",
    "620",
    "623",
    "626",
    "628",
    "629",
    "630",
    "631",
    "636",
    "641",
    "646",
    "650",
    "651",
    "657",
    "660",
    "661",
    "662",
    "667",
    "669",
    "678",
    "681",
    "682",
    "701",
    "702",
    "703",
    "704",
    "706",
    "707",
    "708",
    "712",
    "713",
    "714",
    "715",
    "716",
    "717",
    "718",
    "719",
    "720",
    "724",
    "725",
    "727",
    "731",
    "732",
    "734",
    "737",
    "740",
    "747",
    "754",
    "757",
    "760",
    "762",
    "763",
    "765",
    "769",
    "770",
    "772",
    "773",
    "774",
    "775",
    "779",
    "781",
    "785",
    "786",
    "801",
    "802",
    "803",
    "804",
    "805",
    "806",
    "808",
    "810",
    "812",
    "813",
    "814",
    "815",
    "816",
    "817",
    "818",
    "828",
    "830",
    "831",
    "832",
    "843",
    "845",
    "847",
    "848",
    "850",
    "856",
    "857",
    "858",
    "859",
    "860",
    "862",
    "863",
    "864",
    "865",
    "870",
    "872",
    "878",
    "901",
    "903",
    "904",
    "906",
    "907",
    "908",
    "909",
    "910",
    "912",
    "913",
    "914",
    "915",
    "916",
    "917",
    "918",
    "919",
    "920",
    "925",
    "928",
    "929",
    "931",
    "936",
    "937",
    "938",
    "940",
    "941",
    "947",
    "949",
    "951",
    "952",
    "954",
    "956",
    "959",
    "970",
    "971",
    "972",
    "973",
    "978",
    "979",
    "980",
    "984",
    "985",
    "989",
]

# International numbers: (country code, national prefix, random digits after it, digit grouping,
# whether the country writes a trunk "0" that may appear as "(0)").
INTERNATIONAL = (
    ("44", "207", 7, (2, 4, 4), True),  # London landline: +44 20 7946 0958
    ("44", "79", 8, (4, 6), True),  # UK mobile: +44 7911 123456
    ("49", "30", 8, (2, 8), True),  # Berlin: +49 30 12345678
    ("49", "151", 8, (3, 8), True),  # German mobile
    ("52", "55", 8, (2, 4, 4), False),  # Mexico City
    ("33", "6", 8, (1, 2, 2, 2, 2), True),  # French mobile
    ("61", "4", 8, (1, 4, 4), True),  # Australian mobile
)

FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Donald",
    "Emily",
    "Steven",
    "Kimberly",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Timothy",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Jason",
    "Rebecca",
    "Maria",
    "Luis",
    "José",
    "Zoë",
    "Renée",
    "Chloé",
    "François",
    "Björn",
    "Jürgen",
    "Łukasz",
    "Søren",
    "Ñico",
    "Inés",
    "Mónica",
    "Raúl",
    "Ángel",
    "Seán",
    "Siobhán",
    "Noémie",
    "Dvořák",
    "Ümit",
    "Çağla",
    "李",
    "王芳",
    "陈静",
    "Мария",
    "Алексей",
    "محمد",
    "Αλέξανδρος",
    "佐藤",
    "민준",
    "Nguyễn",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "O'Brien",
    "Peña",
    "Muñoz",
    "Núñez",
    "Müller",
    "Schröder",
    "Gößling",
    "Fernández",
    "Álvarez",
    "Dubois",
    "Lefèvre",
    "Björk",
    "Østergaard",
    "Kowalczyk",
    "Wiśniewski",
    "Yılmaz",
    "Öztürk",
    "李",
    "王",
    "张",
    "Иванов",
    "Παπαδόπουλος",
    "田中",
    "김",
    "Trần",
    "D'Angelo",
    "van-der-Berg",
]
EMOJI = ("🙂", "⭐", "🏡", "📞")
STREETS = [
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Lincoln",
    "Jackson",
    "Church",
    "River",
    "Highland",
    "Meadow",
    "Forest",
    "Spring",
    "Ridge",
    "Valley",
    "Mill",
    "Franklin",
    "Jefferson",
    "Madison",
]
STREET_SUFFIXES = ("St", "Ave", "Blvd", "Rd", "Ln", "Dr", "Ct", "Way", "Pl")
UNITS = ("Apt 2B", "Suite 200", "Unit 5", "Apt 14", "Floor 3", "#7")
CITIES = (
    ("Washington", "DC", 20001),
    ("New York", "NY", 10001),
    ("Brooklyn", "NY", 11201),
    ("Los Angeles", "CA", 90001),
    ("San Francisco", "CA", 94102),
    ("San Diego", "CA", 92101),
    ("Chicago", "IL", 60601),
    ("Houston", "TX", 77001),
    ("Austin", "TX", 73301),
    ("Dallas", "TX", 75201),
    ("Phoenix", "AZ", 85001),
    ("Philadelphia", "PA", 19102),
    ("Boston", "MA", 2108),
    ("Newark", "NJ", 7102),
    ("Hartford", "CT", 6103),
    ("Miami", "FL", 33101),
    ("Orlando", "FL", 32801),
    ("Atlanta", "GA", 30301),
    ("Seattle", "WA", 98101),
    ("Portland", "OR", 97201),
    ("Denver", "CO", 80201),
    ("Las Vegas", "NV", 89101),
    ("Detroit", "MI", 48201),
    ("Nashville", "TN", 37201),
    ("Charlotte", "NC", 28201),
    ("Minneapolis", "MN", 55401),
    ("St. Louis", "MO", 63101),
    ("Salt Lake City", "UT", 84101),
    ("Coeur d'Alene", "ID", 83814),
    ("Española", "NM", 87532),
    ("San Juan", "PR", 901),
    ("Honolulu", "HI", 96801),
    ("Anchorage", "AK", 99501),
)
LEAD_SOURCES = (
    "Facebook Ads",
    "Google Ads",
    "Zillow",
    "Referral",
    "Website",
    "Cold Call",
    "Open House",
    "Realtor.com",
    "Direct Mail, Postcard",
    "",
    "Instagram",
    "Yard Sign",
)
EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "example.com")
GARBAGE_PHONES = ("n/a", "N/A", "call me", "000-000-0000", "123", "tbd", "none", "-", "x", "0")


def _ascii_slug(name: str) -> str:
    slug = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in slug if ch.isalnum()) or "user"


def _is_valid(text: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(text, "US"))
    except phonenumbers.NumberParseException:
        return False


def valid_us_prefixes(rng: np.random.Generator) -> list[str]:
    """Area code + exchange pairs that phonenumbers accepts with several random line numbers.

    Exchange 555 is left out entirely: most of it is reserved or fictional.
    """
    prefixes = []
    for npa in AREA_CODES:
        for nxx in rng.choice(np.arange(200, 1000), size=EXCHANGES_PER_AREA_CODE, replace=False):
            if nxx == 555 or nxx % 100 == 11:
                continue
            prefix = f"{npa}{nxx}"
            lines = rng.integers(0, 10_000, size=3)
            if all(_is_valid(f"{prefix}{line:04d}") for line in lines):
                prefixes.append(prefix)
    return prefixes


def _group(digits: str, sizes: tuple[int, ...]) -> list[str]:
    parts, start = [], 0
    for size in sizes:
        parts.append(digits[start : start + size])
        start += size
    return parts


def format_us(digits: str, style: int) -> str:
    """One of nine ways people write a 10-digit North American number."""
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return (
        f"({a}) {b}-{c}",
        f"{a}-{b}-{c}",
        f"{a}.{b}.{c}",
        digits,
        f"+1 {a} {b} {c}",
        f"+1 ({a}) {b}-{c}",
        f"1-{a}-{b}-{c}",
        f"[{a}] {b} {c}",
        f"001 {a} {b} {c}",  # "00" exit code + country code 1, as dialled from most countries
    )[style % 9]


US_STYLES = 9


def format_international(cc: str, national: str, grouping: tuple[int, ...], trunk: bool, style: int) -> str:
    """One of five ways an international number shows up in a US export."""
    grouped = " ".join(_group(national, grouping))
    style %= 5
    if style == 0:
        return f"+{cc} {grouped}"
    if style == 1:
        return f"+{cc}{national}"
    if style == 2:
        return f"011 {cc} {grouped}"  # US international dialling prefix
    if style == 3:
        return f"00{cc} {grouped}"  # "00" exit code used outside North America
    return f"+{cc} (0){grouped}" if trunk else f"+{cc}-{national}"


INTERNATIONAL_STYLES = 5


def _fresh_international(rng: np.random.Generator) -> tuple[str, str, tuple[int, ...], bool]:
    while True:
        cc, prefix, n_random, grouping, trunk = INTERNATIONAL[int(rng.integers(len(INTERNATIONAL)))]
        national = prefix + "".join(str(d) for d in rng.integers(0, 10, size=n_random))
        if _is_valid(f"+{cc}{national}"):
            return cc, national, grouping, trunk


def _invalid_phone(rng: np.random.Generator, us_digits: str) -> str:
    """A number a person might type that no phone library should accept."""
    kind = int(rng.integers(6))
    if kind == 0:
        return GARBAGE_PHONES[int(rng.integers(len(GARBAGE_PHONES)))]
    if kind == 1:
        return f"{us_digits[3:6]}-{us_digits[6:]}"  # local 7-digit number, no area code
    if kind == 2:
        return f"999-{us_digits[3:6]}-{us_digits[6:]}"  # unassigned area code 999
    if kind == 3:
        return f"+1 1{us_digits[1:3]} {us_digits[3:6]} {us_digits[6:]}"  # area code cannot start with 1
    if kind == 4:
        return f"{us_digits[:3]}-{us_digits[3:6]}-{us_digits[6:]}9"  # a digit too many
    return f"({us_digits[:3]}) {us_digits[3:6]}-{us_digits[6:9]}"  # a digit short


def generate(rows: int, seed: int, out: Path, emoji_share: float = EMOJI_NAME_SHARE) -> dict[str, int]:
    """Write ``rows`` contact rows to ``out``; return how many rows of each phone kind were planted.

    ``emoji_share`` of the first names end in an emoji (1.0: every name, the memory worst case:
    such text takes 4 bytes a character as a Python string).
    """
    rng = np.random.default_rng(seed)
    prefixes = valid_us_prefixes(rng)

    kind_draw = rng.random(rows).tolist()
    intl_draw = rng.random(rows).tolist()
    dup_pick = rng.random(rows).tolist()
    style = rng.integers(0, 1 << 30, size=rows).tolist()
    prefix_idx = rng.integers(0, len(prefixes), size=rows).tolist()
    line = rng.integers(0, 10_000, size=rows).tolist()
    first_idx = rng.integers(0, len(FIRST_NAMES), size=rows).tolist()
    last_idx = rng.integers(0, len(LAST_NAMES), size=rows).tolist()
    email_num = rng.integers(1, 1000, size=rows).tolist()
    email_draw = rng.random(rows).tolist()
    domain_idx = rng.integers(0, len(EMAIL_DOMAINS), size=rows).tolist()
    house = rng.integers(1, 9999, size=rows).tolist()
    street_idx = rng.integers(0, len(STREETS) * len(STREET_SUFFIXES), size=rows).tolist()
    address_draw = rng.random(rows).tolist()
    unit_idx = rng.integers(0, len(UNITS), size=rows).tolist()
    city_idx = rng.integers(0, len(CITIES), size=rows).tolist()
    zip_offset = rng.integers(0, 90, size=rows).tolist()
    source_idx = rng.integers(0, len(LEAD_SOURCES), size=rows).tolist()
    emoji_draw = rng.random(rows).tolist()

    first_slugs = [_ascii_slug(n) for n in FIRST_NAMES]
    last_slugs = [_ascii_slug(n) for n in LAST_NAMES]
    # Fresh valid numbers so far, as ("us", digits, style) or ("intl", parts, style).
    seen: list[tuple] = []
    counts = {"empty": 0, "invalid": 0, "duplicate": 0, "international": 0, "us": 0}
    dup_cut = EMPTY_SHARE + INVALID_SHARE + DUPLICATE_SHARE

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        batch = []
        for i in range(rows):
            us_digits = f"{prefixes[prefix_idx[i]]}{line[i]:04d}"
            k = kind_draw[i]
            if k < EMPTY_SHARE:
                phone = ""
                counts["empty"] += 1
            elif k < EMPTY_SHARE + INVALID_SHARE:
                phone = _invalid_phone(rng, us_digits)
                counts["invalid"] += 1
            elif k < dup_cut and seen:
                kind, value, old_style = seen[int(dup_pick[i] * len(seen))]
                if kind == "us":
                    phone = format_us(value, old_style + 1 + style[i] % (US_STYLES - 1))
                else:
                    phone = format_international(*value, old_style + 1 + style[i] % (INTERNATIONAL_STYLES - 1))
                counts["duplicate"] += 1
            elif intl_draw[i] < INTERNATIONAL_SHARE:
                parts = _fresh_international(rng)
                phone = format_international(*parts, style[i])
                seen.append(("intl", parts, style[i] % INTERNATIONAL_STYLES))
                counts["international"] += 1
            else:
                phone = format_us(us_digits, style[i])
                seen.append(("us", us_digits, style[i] % US_STYLES))
                counts["us"] += 1

            fi, li = first_idx[i], last_idx[i]
            first = FIRST_NAMES[fi]
            if emoji_draw[i] < emoji_share:
                first = f"{first} {EMOJI[fi % len(EMOJI)]}"
            email = (
                ""
                if email_draw[i] < EMPTY_EMAIL_SHARE
                else f"{first_slugs[fi]}.{last_slugs[li]}{email_num[i]}@{EMAIL_DOMAINS[domain_idx[i]]}"
            )
            s = street_idx[i]
            address = f"{house[i]} {STREETS[s % len(STREETS)]} {STREET_SUFFIXES[s // len(STREETS)]}"
            a = address_draw[i]
            if a < NEWLINE_ADDRESS_SHARE:
                address = f"{address}\n{UNITS[unit_idx[i]]}"
            elif a < NEWLINE_ADDRESS_SHARE + COMMA_ADDRESS_SHARE:
                address = f"{address}, {UNITS[unit_idx[i]]}"
            city, state, zip_base = CITIES[city_idx[i]]
            batch.append(
                (
                    first,
                    LAST_NAMES[li],
                    email,
                    phone,
                    address,
                    city,
                    state,
                    f"{zip_base + zip_offset[i]:05d}",
                    LEAD_SOURCES[source_idx[i]],
                )
            )
            if len(batch) >= 10_000:
                writer.writerows(batch)
                batch.clear()
        writer.writerows(batch)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--emoji-share", type=float, default=EMOJI_NAME_SHARE, help="share of first names ending in an emoji"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = generate(args.rows, args.seed, args.out, args.emoji_share)
    print(
        f"wrote {args.rows:,} rows to {args.out} in {time.perf_counter() - started:.1f} s "
        + ", ".join(f"{k}={v:,}" for k, v in counts.items())
    )


if __name__ == "__main__":
    main()
