"""Phone numbers → E.164, exactly as `phonenumbers` decides, but fast enough for a million rows.

`phonenumbers` costs ~25 µs per number (25 s per million), more than the whole database load.
Two exact shortcuts keep its answers while calling it far less often:

* values are de-duplicated per (text, region) before parsing;
* the common NANP shape (10 digits, optional +1/1, spaces/dots/dashes, round or square brackets
  around the area code) is recognised
  with one vectorised regex. `phonenumbers` decides the validity of a 10-digit NANP number with
  regexes over the national number, and those regexes only look at its first few digits
  (4 for most US area codes, up to 7 for Barbados/Jamaica). `_nanp_key_depths` reads that depth
  per area code from the installed metadata, so phonenumbers is asked once per distinct prefix
  of that length and the answer reused. contact_import_tests/test_phones.py compares the
  shortcut with plain `phonenumbers` (hypothesis, plus every area code).
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import re
import re._constants as sre_constants  # the stdlib regex parser: reads phonenumbers' patterns
import re._parser as sre_parser
import threading
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from contact_import_pipeline.columns import normalize_header

MISSING_PHONE = "missing_phone"
INVALID_PHONE = "invalid_phone"

# Values people put in a phone cell to say "no phone" (compared case-insensitively).
_NULL_TOKENS = frozenset({"", "null", "n/a", "na", "none", "-", "nan", "nil", "#n/a"})

# Excel turns long digit strings into "1.20255501E+10": digits are lost, so never guess.
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")

# NANP shape (RE2 syntax, for pyarrow). Only these separators are accepted, so phonenumbers
# reads the same 10 digits; anything else goes through phonenumbers itself.
_NANP_SHAPE = (r"^(?P<prefix>\+1|1)?[ .\-]*[(\[]?(?P<area>[2-9]\d\d)[)\]]?[ .\-]*"
               r"(?P<exchange>\d{3})[ .\-]*(?P<line>\d{4})$")

# A phone column is normalized this many rows at a time, so the Python objects made along the way
# stay bounded (a million at once cost ~600 MB that the allocator keeps after they are freed), and
# the chunks run on every core once there are at least two of them.
PHONE_CHUNK_ROWS = 100_000

# Regions whose national numbers take the fast path (both use national prefix "1").
_NANP_FAST_REGIONS = frozenset({"US", "CA"})


# Country names and codes → ISO region, keyed by normalize_header(). ISO alpha-2 codes known to
# phonenumbers are accepted without being listed here.
_COUNTRY_NAMES = {
    "usa": "US", "unitedstates": "US", "unitedstatesofamerica": "US", "america": "US",
    "us": "US", "estadosunidos": "US", "etatsunis": "US", "vereinigtestaaten": "US",
    "canada": "CA", "kanada": "CA",
    "uk": "GB", "gb": "GB", "gbr": "GB", "unitedkingdom": "GB", "greatbritain": "GB",
    "england": "GB", "scotland": "GB", "wales": "GB", "northernireland": "GB",
    "grossbritannien": "GB", "vereinigteskonigreich": "GB", "royaumeuni": "GB", "reinounido": "GB",
    "germany": "DE", "deutschland": "DE", "deu": "DE", "allemagne": "DE", "alemania": "DE",
    "austria": "AT", "osterreich": "AT", "aut": "AT",
    "switzerland": "CH", "schweiz": "CH", "suisse": "CH", "che": "CH", "suiza": "CH",
    "france": "FR", "fra": "FR", "frankreich": "FR", "francia": "FR",
    "mexico": "MX", "mex": "MX", "mexiko": "MX", "mexique": "MX",
    "spain": "ES", "espana": "ES", "esp": "ES", "spanien": "ES", "espagne": "ES",
    "italy": "IT", "italia": "IT", "ita": "IT", "italien": "IT", "italie": "IT",
    "netherlands": "NL", "thenetherlands": "NL", "holland": "NL", "nederland": "NL", "nld": "NL",
    "niederlande": "NL", "paysbas": "NL", "belgium": "BE", "belgien": "BE", "belgique": "BE",
    "ireland": "IE", "irland": "IE", "irlande": "IE", "portugal": "PT", "brazil": "BR",
    "brasil": "BR", "argentina": "AR", "colombia": "CO", "chile": "CL", "peru": "PE",
    "australia": "AU", "aus": "AU", "newzealand": "NZ", "india": "IN", "ind": "IN",
    "china": "CN", "japan": "JP", "southkorea": "KR", "korea": "KR", "philippines": "PH",
    "poland": "PL", "polen": "PL", "sweden": "SE", "norway": "NO", "denmark": "DK",
    "finland": "FI", "southafrica": "ZA", "nigeria": "NG", "israel": "IL",
    "unitedarabemirates": "AE", "uae": "AE", "puertorico": "PR",
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


_DIGITS = frozenset("0123456789")
# A path through a regex: (length, depth, heads). depth = 1 + index of the last character that is
# not "any digit" (0 if none); heads = the digit sets allowed at the first three positions.
_Path = tuple[int, int, tuple[frozenset[str], ...]]
_MAX_PATH_LENGTH = 17  # longest national number phonenumbers handles


def _join(left: set[_Path], right: set[_Path]) -> set[_Path]:
    return {
        (l1 + l2, max(d1, l1 + d2 if d2 else 0), (h1 + h2)[:3])
        for l1, d1, h1 in left for l2, d2, h2 in right if l1 + l2 <= _MAX_PATH_LENGTH
    }


def _paths(items: list) -> set[_Path]:
    """All (length, depth, heads) paths of a parsed pattern; ValueError for unknown syntax."""
    out: set[_Path] = {(0, 0, ())}
    for op, arg in items:
        if op is sre_constants.LITERAL:
            one = {(1, 1, (frozenset({chr(arg)}),))} if chr(arg) in _DIGITS else set()
        elif op is sre_constants.IN:
            chars: set[str] = set()
            for kind, value in arg:
                if kind is sre_constants.LITERAL:
                    chars.add(chr(value))
                elif kind is sre_constants.RANGE:
                    chars.update(chr(c) for c in range(value[0], value[1] + 1))
                elif kind is sre_constants.CATEGORY and value is sre_constants.CATEGORY_DIGIT:
                    chars |= _DIGITS
                else:
                    raise ValueError(f"unsupported class item {kind}")
            digits = frozenset(chars & _DIGITS)
            one = {(1, 0 if digits == _DIGITS else 1, (digits,))} if digits else set()
        elif op is sre_constants.SUBPATTERN:
            one = _paths(arg[-1])
        elif op is sre_constants.BRANCH:
            one = set().union(*(_paths(branch) for branch in arg[1]))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            body, step, one = _paths(sub), {(0, 0, ())}, set()
            for count in range(min(high, _MAX_PATH_LENGTH) + 1):
                if count >= low:
                    one |= step
                step = _join(step, body)
        else:
            raise ValueError(f"unsupported regex op {op}")
        out = _join(out, one)
    return out


@functools.cache
def _nanp_key_depths() -> dict[str, int]:
    """Area code → how many leading digits decide phonenumbers' validity of a 10-digit number.

    Validity = the first NANP region whose leading_digits match (prefix) or whose type patterns
    match (full), then that region's type patterns. A pattern path that accepts a number accepts
    every number sharing its first `depth` digits, so the largest depth among paths that can
    start with an area code bounds what phonenumbers reads for it. Empty when a pattern uses
    syntax this reader does not know (then every NANP number goes through phonenumbers).
    """
    depths = {"".join(code): 3 for code in itertools.product("0123456789", repeat=3)}
    try:
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
            metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
            paths = _paths(sre_parser.parse(metadata.leading_digits or ""))
            for desc in (metadata.general_desc, metadata.fixed_line, metadata.mobile,
                         metadata.toll_free, metadata.premium_rate, metadata.shared_cost,
                         metadata.personal_number, metadata.voip, metadata.pager, metadata.uan,
                         metadata.voicemail):
                if desc is not None and desc.national_number_pattern:
                    parsed = sre_parser.parse(desc.national_number_pattern)
                    paths |= {p for p in _paths(parsed) if p[0] == 10}
            for _, depth, heads in paths:
                heads = heads + (_DIGITS,) * (3 - len(heads))
                for code in itertools.product(*heads):
                    key = "".join(code)
                    depths[key] = max(depths[key], depth)
    except ValueError:
        return {}
    return depths


# phonenumbers' answer per NANP key, kept across calls: a run of many small files asks about the
# same area codes again and again (~30 µs each). Keys are at most a few digits, so this stays small.
_KEY_VALIDITY: dict[str, bool] = {}


def _key_valid(key: str, sample: str) -> bool:
    """Validity of every NANP number whose key is ``key``, asked of phonenumbers with ``sample`` once."""
    found = _KEY_VALIDITY.get(key)
    if found is None:
        found = _KEY_VALIDITY[key] = _nanp_prefix_valid(sample)
    return found


def _nanp_prefix_valid(national: str) -> bool:
    """phonenumbers' validity for a 10-digit NANP national number (depends on its prefix only)."""
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
    return phonenumbers.is_valid_number(number)


def _regions(countries: Sequence[str], default_region: str) -> np.ndarray:
    """Region per row: the row's country when recognised, else the default region."""
    column = pd.Series(countries, dtype=object).fillna("")
    lookup = {c: region_for_country(str(c)) or default_region for c in column.unique()}
    return column.map(lookup).to_numpy(dtype=object)


def _prepare_all(raw: Sequence[str]) -> tuple[pa.Array, np.ndarray]:
    """Vectorised `_prepare`: (prepared text, missing mask)."""
    text = np.array(["" if v is None else str(v) for v in raw], dtype=object)
    non_ascii = ~pc.string_is_ascii(pa.array(text, type=pa.string())).to_numpy(
        zero_copy_only=False)
    if non_ascii.any():
        text[non_ascii] = [unicodedata.normalize("NFKC", t) for t in text[non_ascii]]
    prepared = pc.utf8_trim_whitespace(pa.array(text, type=pa.string()))
    missing = pc.is_in(pc.utf8_lower(prepared), value_set=pa.array(sorted(_NULL_TOKENS)))
    prepared = pc.replace_substring_regex(prepared, "^00", "+", max_replacements=1)
    return prepared, missing.to_numpy(zero_copy_only=False)


def _nanp_fast(prepared: pa.Array, regions: np.ndarray, missing: np.ndarray,
               result: np.ndarray) -> np.ndarray:
    """Fill `result` for NANP-shaped rows; return the mask of rows it decided.

    Runs in Arrow compute kernels; Python only asks phonenumbers once per distinct key.
    """
    depths = _nanp_key_depths()
    parts = pc.extract_regex(prepared, _NANP_SHAPE)
    shaped = parts.is_valid().to_numpy(zero_copy_only=False)
    prefix = parts.field("prefix").to_numpy(zero_copy_only=False)
    nanp_region = np.isin(regions, list(_NANP_FAST_REGIONS))
    fast = shaped & ~missing & ((prefix == "+1") | nanp_region) & bool(depths)
    if not fast.any():
        return fast
    parts = parts.filter(pa.array(fast))
    national = pc.binary_join_element_wise(parts.field("area"), parts.field("exchange"), parts.field("line"), "")
    # The key of a number is its first `depth` digits, where depth is read per area code.
    area_codes = pa.array(list(depths))
    depth = pc.take(pa.array(list(depths.values())), pc.index_in(parts.field("area"), value_set=area_codes))
    keys = pc.utf8_slice_codeunits(national, 0, 3)
    for length in set(depths.values()) - {3}:
        keys = pc.if_else(pc.equal(depth, length), pc.utf8_slice_codeunits(national, 0, length), keys)
    encoded = keys.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    _, first_of_key = np.unique(codes, return_index=True)
    samples = national.take(pa.array(first_of_key)).to_pylist()
    valid = np.array([_key_valid(key, number) for key, number in zip(encoded.dictionary.to_pylist(), samples)], dtype=bool)
    ok = valid[codes]
    e164 = pc.binary_join_element_wise("+1", national, "").filter(pa.array(ok))
    result[np.flatnonzero(fast)[ok]] = e164.to_numpy(zero_copy_only=False)
    return fast


def normalize_phones(
    raw: Sequence[str], countries: Sequence[str], default_region: str
) -> tuple[list[str | None], list[str | None]]:
    """E.164 and reason per row (None | 'missing_phone' | 'invalid_phone').

    National numbers use the row's country (name or ISO code), else `default_region`.
    """
    if len(countries) != len(raw):
        raise ValueError("raw and countries must have the same length")
    regions = _regions(countries, default_region)
    prepared, missing = _prepare_all(raw)
    result = np.full(len(raw), None, dtype=object)
    fast = _nanp_fast(prepared, regions, missing, result)

    slow = np.flatnonzero(~fast & ~missing)
    if len(slow):
        pairs = list(zip(prepared.take(slow).to_pylist(), regions[slow]))
        cache = {pair: _e164(*pair) for pair in dict.fromkeys(pairs)}
        result[slow] = [cache[pair] for pair in pairs]

    invalid = np.array([r is None for r in result], dtype=bool)
    reasons = np.where(missing, MISSING_PHONE, np.where(invalid, INVALID_PHONE, None))
    return result.tolist(), reasons.tolist()


# The columns a forked chunk worker reads (inherited through fork, never pickled); the lock keeps
# two threads of one process from handing over their columns at the same time.
_COLUMNS: tuple[pd.Series, pd.Series, str] | None = None
_COLUMNS_LOCK = threading.Lock()


def _normalize_chunk(start: int) -> tuple[pa.Array, list[str | None]]:
    raw, countries, default_region = _COLUMNS
    chunk = slice(start, start + PHONE_CHUNK_ROWS)
    e164, reasons = normalize_phones(raw.iloc[chunk].tolist(), countries.iloc[chunk].tolist(), default_region)
    return pa.array(e164, type=pa.large_string()), reasons  # Arrow: returned as buffers, not 100k objects


def normalize_phone_column(raw: pd.Series, countries: pd.Series, default_region: str) -> tuple[list[pa.Array], np.ndarray]:
    """``normalize_phones`` over whole columns, in chunks, on every core.

    phonenumbers is pure Python, so one process uses one core; the chunks go to forked workers
    that start with the columns and phonenumbers' metadata already in memory.
    Returns E.164 (Arrow chunks, null when none) and the reason per row (object array).
    """
    global _COLUMNS
    starts = range(0, len(raw), PHONE_CHUNK_ROWS)
    workers = min(os.cpu_count() or 1, len(starts))
    with _COLUMNS_LOCK:
        _COLUMNS = (raw, countries, default_region)
        try:
            if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
                done = [_normalize_chunk(start) for start in starts]
            else:
                with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                    done = list(pool.map(_normalize_chunk, starts))
        finally:
            _COLUMNS = None
    reasons = np.array([reason for _, part in done for reason in part], dtype=object)
    return [e164 for e164, _ in done], reasons
