"""Phone numbers → E.164, exactly as `phonenumbers` decides, but fast enough for a million rows.

`phonenumbers` costs ~25 µs per number (25 s per million), more than the whole database load.
Two exact shortcuts keep its answers while calling it far less often: values are de-duplicated
per (text, region) before parsing, and the common NANP shape takes the shortcut in ``nanp.py``.
A big column is normalized in chunks on every core.

A cell that is no valid number but lists several ("(415) 555-2671 / (415) 555-2672") gives its
first valid one, and keeps the others for the contact's metadata.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from contact_import_pipeline.mapping.columns import normalize_header
from contact_import_pipeline.mapping.forked import map_chunks
from contact_import_pipeline.mapping.nanp import nanp_fast
from contact_import_pipeline.vocabulary import Reason

# Values people put in a phone cell to say "no phone" (compared case-insensitively).
_NULL_TOKENS = frozenset({"", "null", "n/a", "na", "none", "-", "nan", "nil", "#n/a"})

# Excel turns long digit strings into "1.20255501E+10": digits are lost, so never guess.
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")

# Separators between the numbers of one cell, strongest first: a part that is no valid number is
# split again at the next kind, so a slash inside a number ("030/901820 / 030/901821") survives.
_SEPARATORS = (
    re.compile(r"\s*(?:[;,|\r\n]|\bor\b)\s*", re.IGNORECASE | re.ASCII),
    re.compile(r"\s+/\s*|\s*/\s+"),
    re.compile(r"/"),
)
# Whether a cell may hold several numbers (RE2, for pyarrow): finds every cell the separators split.
_SEVERAL = r"(?i)[;,|\r\n/]|\bor\b"

# A phone column is normalized this many rows at a time, so the Python objects made along the way
# stay bounded (a million at once cost ~600 MB that the allocator keeps after they are freed), and
# the chunks run on every core once there are at least two of them.
PHONE_CHUNK_ROWS = 100_000

# Country names and codes → ISO region, keyed by normalize_header(). ISO alpha-2 codes known to
# phonenumbers are accepted without being listed here.
_COUNTRY_NAMES = {
    "usa": "US",
    "unitedstates": "US",
    "unitedstatesofamerica": "US",
    "america": "US",
    "us": "US",
    "estadosunidos": "US",
    "etatsunis": "US",
    "vereinigtestaaten": "US",
    "canada": "CA",
    "kanada": "CA",
    "uk": "GB",
    "gb": "GB",
    "gbr": "GB",
    "unitedkingdom": "GB",
    "greatbritain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northernireland": "GB",
    "grossbritannien": "GB",
    "vereinigteskonigreich": "GB",
    "royaumeuni": "GB",
    "reinounido": "GB",
    "germany": "DE",
    "deutschland": "DE",
    "deu": "DE",
    "allemagne": "DE",
    "alemania": "DE",
    "austria": "AT",
    "osterreich": "AT",
    "aut": "AT",
    "switzerland": "CH",
    "schweiz": "CH",
    "suisse": "CH",
    "che": "CH",
    "suiza": "CH",
    "france": "FR",
    "fra": "FR",
    "frankreich": "FR",
    "francia": "FR",
    "mexico": "MX",
    "mex": "MX",
    "mexiko": "MX",
    "mexique": "MX",
    "spain": "ES",
    "espana": "ES",
    "esp": "ES",
    "spanien": "ES",
    "espagne": "ES",
    "italy": "IT",
    "italia": "IT",
    "ita": "IT",
    "italien": "IT",
    "italie": "IT",
    "netherlands": "NL",
    "thenetherlands": "NL",
    "holland": "NL",
    "nederland": "NL",
    "nld": "NL",
    "niederlande": "NL",
    "paysbas": "NL",
    "belgium": "BE",
    "belgien": "BE",
    "belgique": "BE",
    "ireland": "IE",
    "irland": "IE",
    "irlande": "IE",
    "portugal": "PT",
    "brazil": "BR",
    "brasil": "BR",
    "argentina": "AR",
    "colombia": "CO",
    "chile": "CL",
    "peru": "PE",
    "australia": "AU",
    "aus": "AU",
    "newzealand": "NZ",
    "india": "IN",
    "ind": "IN",
    "china": "CN",
    "japan": "JP",
    "southkorea": "KR",
    "korea": "KR",
    "philippines": "PH",
    "poland": "PL",
    "polen": "PL",
    "sweden": "SE",
    "norway": "NO",
    "denmark": "DK",
    "finland": "FI",
    "southafrica": "ZA",
    "nigeria": "NG",
    "israel": "IL",
    "unitedarabemirates": "AE",
    "uae": "AE",
    "puertorico": "PR",
}


def is_valid_region(region: str) -> bool:
    """True for an ISO region code phonenumbers has metadata for (e.g. 'US', 'DE')."""
    return region in phonenumbers.SUPPORTED_REGIONS


def region_for_country(value: str) -> str | None:
    """ISO region for a country cell ('us', 'Germany', 'Deutschland', 'UK'); None when unknown."""
    key = normalize_header(value)
    if not key:
        return None
    if key.upper() in phonenumbers.SUPPORTED_REGIONS:
        return key.upper()
    return _COUNTRY_NAMES.get(key)


def _prepare(raw: str) -> str | None:
    """NFKC + strip + '00' → '+'; None when the cell means "no phone"."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if text.casefold() in _NULL_TOKENS:
        return None
    return "+" + text[2:] if text.startswith("00") else text


def _e164(text: str, region: str) -> str | None:
    """E.164 for prepared text when phonenumbers finds a *valid* number (extensions dropped)."""
    if _SCIENTIFIC.fullmatch(text):
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(raw: str, region: str) -> str | None:
    """One number → E.164, or None when empty or invalid. `region` applies to national numbers."""
    text = _prepare(raw)
    return None if text is None else _e164(text, region)


def _numbers_in(text: str, region: str, level: int = 0) -> list[str]:
    """E.164 of each valid number of a cell listing several, in cell order (repeats kept)."""
    found = []
    for part in _SEPARATORS[level].split(text):
        prepared = _prepare(part)
        number = None if prepared is None else _e164(prepared, region)
        if number is not None:
            found.append(number)
        elif prepared is not None and level + 1 < len(_SEPARATORS):
            found.extend(_numbers_in(prepared, region, level + 1))
    return found


def _several_numbers(
    prepared: pa.Array, regions: np.ndarray, failed: np.ndarray, result: np.ndarray
) -> dict[int, list[str]]:
    """Give each failed row whose cell lists several numbers its first valid one (in ``result``).

    Returns row → the cell's other valid numbers (E.164, cell order, without repeats) for those
    rows. Only failed rows holding a separator are split, so other files pay nothing.
    """
    rows = np.flatnonzero(failed)
    rows = rows[pc.match_substring_regex(prepared.take(rows), _SEVERAL).to_numpy(zero_copy_only=False)]
    pairs = list(zip(prepared.take(rows).to_pylist(), regions[rows], strict=True))
    cache = {pair: list(dict.fromkeys(_numbers_in(*pair))) for pair in dict.fromkeys(pairs)}
    others = {}
    for row, pair in zip(rows.tolist(), pairs, strict=True):
        if numbers := cache[pair]:
            result[row] = numbers[0]
            others[row] = numbers[1:]
    return others


def _regions(countries: Sequence[str], default_region: str) -> np.ndarray:
    """Region per row: the row's country when recognised, else the default region."""
    column = pd.Series(countries, dtype=object).fillna("")
    lookup = {c: region_for_country(str(c)) or default_region for c in column.unique()}
    return column.map(lookup).to_numpy(dtype=object)


def _prepare_all(raw: Sequence[str]) -> tuple[pa.Array, np.ndarray]:
    """Vectorised `_prepare`: (prepared text, missing mask)."""
    text = np.array(["" if v is None else str(v) for v in raw], dtype=object)
    non_ascii = ~pc.string_is_ascii(pa.array(text, type=pa.string())).to_numpy(zero_copy_only=False)
    if non_ascii.any():
        text[non_ascii] = [unicodedata.normalize("NFKC", t) for t in text[non_ascii]]
    prepared = pc.utf8_trim_whitespace(pa.array(text, type=pa.string()))
    missing = pc.is_in(pc.utf8_lower(prepared), value_set=pa.array(sorted(_NULL_TOKENS)))
    prepared = pc.replace_substring_regex(prepared, "^00", "+", max_replacements=1)
    return prepared, missing.to_numpy(zero_copy_only=False)


def normalize_phones(
    raw: Sequence[str], countries: Sequence[str], default_region: str
) -> tuple[list[str | None], list[str | None], dict[int, list[str]]]:
    """E.164 and reason per row (None | 'missing_phone' | 'invalid_phone'), and the other numbers
    of the rows whose phone came from a cell listing several (row → E.164 list, maybe empty).

    National numbers use the row's country (name or ISO code), else `default_region`. A cell is
    split only when it is not one valid number, so a single number gets phonenumbers' answer.
    """
    if len(countries) != len(raw):
        raise ValueError("raw and countries must have the same length")
    regions = _regions(countries, default_region)
    prepared, missing = _prepare_all(raw)
    result = np.full(len(raw), None, dtype=object)
    fast = nanp_fast(prepared, regions, missing, result)

    slow = np.flatnonzero(~fast & ~missing)
    if len(slow):
        pairs = list(zip(prepared.take(slow).to_pylist(), regions[slow], strict=True))
        cache = {pair: _e164(*pair) for pair in dict.fromkeys(pairs)}
        result[slow] = [cache[pair] for pair in pairs]

    invalid = np.array([r is None for r in result], dtype=bool) & ~missing
    others = _several_numbers(prepared, regions, invalid, result)
    invalid[list(others)] = False
    reasons = [
        Reason.MISSING_PHONE.value if m else Reason.INVALID_PHONE.value if i else None
        for m, i in zip(missing, invalid, strict=True)
    ]
    return result.tolist(), reasons, others


# The columns a forked chunk worker reads (inherited through fork, never pickled); the lock keeps
# two threads of one process from handing over their columns at the same time.
def normalize_phone_column(
    raw: pd.Series, countries: pd.Series, default_region: str
) -> tuple[list[pa.Array], np.ndarray, dict[int, list[str]]]:
    """``normalize_phones`` over whole columns, in chunks, on every core.

    phonenumbers is pure Python, so one process uses one core; the chunks go to forked workers
    that start with the columns and phonenumbers' metadata already in memory.
    Returns E.164 (Arrow chunks, null when none), the reason per row (object array), and the other
    numbers of the rows whose phone came from a cell listing several (row position → E.164 list).
    """

    def chunk(start: int) -> tuple[pa.Array, list[str | None], dict[int, list[str]]]:
        rows = slice(start, start + PHONE_CHUNK_ROWS)
        e164, reasons, others = normalize_phones(raw.iloc[rows].tolist(), countries.iloc[rows].tolist(), default_region)
        # Arrow: returned as buffers, not 100k objects
        return pa.array(e164, type=pa.large_string()), reasons, {start + row: o for row, o in others.items()}

    done = map_chunks(chunk, len(raw), PHONE_CHUNK_ROWS)
    reasons = np.array([reason for _, part, _ in done for reason in part], dtype=object)
    return [e164 for e164, _, _ in done], reasons, {row: o for _, _, others in done for row, o in others.items()}
