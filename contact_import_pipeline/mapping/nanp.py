"""The exact NANP shortcut: 10-digit North American numbers decided without parsing each one.

`phonenumbers` decides the validity of a 10-digit NANP number with regexes over the national
number, and those regexes only look at its first few digits (4 for most US area codes, up to 7 for
Barbados/Jamaica). ``key_depths`` reads that depth per area code from the installed metadata (with
the stdlib regex parser), so phonenumbers is asked once per distinct prefix of that length and the
answer reused for every number sharing it. Anything it cannot prove equal goes through phonenumbers.
contact_import_tests/mapping/test_phones.py compares it with plain `phonenumbers`.
"""

from __future__ import annotations

import functools
import itertools
import re._constants as sre_constants  # the stdlib regex parser: reads phonenumbers' patterns
import re._parser as sre_parser

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

# NANP shape (RE2 syntax, for pyarrow). Only these separators are accepted, so phonenumbers
# reads the same 10 digits; anything else goes through phonenumbers itself.
_NANP_SHAPE = (
    r"^(?P<prefix>\+1|1)?[ .\-]*[(\[]?(?P<area>[2-9]\d\d)[)\]]?[ .\-]*"
    r"(?P<exchange>\d{3})[ .\-]*(?P<line>\d{4})$"
)

# Regions whose national numbers take the fast path (both use national prefix "1").
_NANP_FAST_REGIONS = frozenset({"US", "CA"})


_DIGITS = frozenset("0123456789")
# A path through a regex: (length, depth, heads). depth = 1 + index of the last character that is
# not "any digit" (0 if none); heads = the digit sets allowed at the first three positions.
_Path = tuple[int, int, tuple[frozenset[str], ...]]
_MAX_PATH_LENGTH = 17  # longest national number phonenumbers handles


def _join(left: set[_Path], right: set[_Path]) -> set[_Path]:
    return {
        (l1 + l2, max(d1, l1 + d2 if d2 else 0), (h1 + h2)[:3])
        for l1, d1, h1 in left
        for l2, d2, h2 in right
        if l1 + l2 <= _MAX_PATH_LENGTH
    }


def _paths(items: list) -> set[_Path]:
    """All (length, depth, heads) paths of a parsed pattern; ValueError for unknown syntax."""
    out: set[_Path] = {(0, 0, ())}
    for op, arg in items:
        one: set[_Path]
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
            body = _paths(sub)
            step: set[_Path] = {(0, 0, ())}
            one = set()
            for count in range(min(high, _MAX_PATH_LENGTH) + 1):
                if count >= low:
                    one |= step
                step = _join(step, body)
        else:
            raise ValueError(f"unsupported regex op {op}")
        out = _join(out, one)
    return out


@functools.cache
def key_depths() -> dict[str, int]:
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
            assert metadata is not None  # every NANP region has metadata
            paths = _paths(sre_parser.parse(metadata.leading_digits or ""))
            for desc in (
                metadata.general_desc,
                metadata.fixed_line,
                metadata.mobile,
                metadata.toll_free,
                metadata.premium_rate,
                metadata.shared_cost,
                metadata.personal_number,
                metadata.voip,
                metadata.pager,
                metadata.uan,
                metadata.voicemail,
            ):
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


def nanp_fast(prepared: pa.Array, regions: np.ndarray, missing: np.ndarray, result: np.ndarray) -> np.ndarray:
    """Fill `result` for NANP-shaped rows; return the mask of rows it decided.

    Runs in Arrow compute kernels; Python only asks phonenumbers once per distinct key.
    """
    depths = key_depths()
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
    valid = np.array(
        [_key_valid(key, number) for key, number in zip(encoded.dictionary.to_pylist(), samples, strict=True)],
        dtype=bool,
    )
    ok = valid[codes]
    e164 = pc.binary_join_element_wise("+1", national, "").filter(pa.array(ok))
    result[np.flatnonzero(fast)[ok]] = e164.to_numpy(zero_copy_only=False)
    return fast
