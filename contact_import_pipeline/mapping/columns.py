"""Header row → contact fields: synonyms for real CRM/address-book exports, or an explicit mapping.

Headers are compared after `normalize_header`, so "E-mail Address", "email_address" and
"EMAIL ADDRESS" are the same key. Each field lists its synonyms best first; the first synonym
present wins, and among equal synonyms the leftmost column. Mapping values are only used to find
header positions.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import nameparser
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contact_import_pipeline.errors import ColumnMappingError
from contact_import_pipeline.mapping.forked import map_chunks
from contact_import_pipeline.model import CONTACT_FIELDS
from contact_import_pipeline.reading.csv_file import text_column

OUTPUT_COLUMNS: tuple[str, ...] = (*CONTACT_FIELDS, "phone_raw", "country_raw")
MAPPABLE_FIELDS: tuple[str, ...] = (*CONTACT_FIELDS, "phone", "country", "full_name")

# Address exports repeat each address field per kind; the first kind present wins.
_ADDRESS_PREFIXES = (
    "",
    "address1",
    "mailing",
    "business",
    "home",
    "primary",
    "billing",
    "shipping",
    "other",
    "person",
    "contact",
    "work",
)
_GERMAN_SUFFIXES = ("", "geschaftlich", "privat", "weitere")


def _address(*bases: str) -> tuple[str, ...]:
    """Every prefix/suffix combination of the address synonyms, most specific kind first."""
    return tuple(p + b + s for p in _ADDRESS_PREFIXES for b in bases for s in _GERMAN_SUFFIXES)


# Normalized header keys per field, best first.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "firstname": (
        "firstname",
        "givenname",
        "personfirstname",
        "contactfirstname",
        "first",
        "fname",
        "forename",
        "vorname",
        "prenom",
        "nombre",
        "nome",
    ),
    "lastname": (
        "lastname",
        "familyname",
        "personlastname",
        "contactlastname",
        "surname",
        "last",
        "lname",
        "nachname",
        "nomdefamille",
        "nom",
        "apellido",
        "apellidos",
        "cognome",
    ),
    "email": (
        "email",
        "emailaddress",
        "email1value",
        "personemailwork",
        "personemail",
        "personemailhome",
        "personemailother",
        "emailadresse",
        "email1",
        "mail",
        "primaryemail",
        "workemail",
        "homeemail",
        "courriel",
        "adressedemessagerie",
        "correoelectronico",
        "emailtypeinternet",
        "emailtypework",
        "emailtypehome",
        "email2address",
        "email2value",
        "email2adresse",
    ),
    "lead_source": ("leadsource", "originalsource", "source", "hsanalyticssource", "quelle", "origine", "origen"),
    "market": ("market", "targetmarket", "markt", "marche", "mercado"),
    "product": ("product", "products", "productinterest", "produkt", "produit", "producto"),
    "lead_status": ("leadstatus", "status", "hsleadstatus", "contactstatus", "statut"),
    "st_address": (
        *_address(
            "street",
            "streetaddress",
            "address",
            "addressline1",
            "address1",
            "strasse",
            "adresse",
            "rue",
            "direccion",
            "calle",
        ),
        "adr",
        "address1formatted",
    ),
    "city": _address("city", "town", "locality", "ort", "stadt", "ville", "ciudad"),
    "state": _address(
        "state",
        "stateregion",
        "stateprovince",
        "province",
        "region",
        "county",
        "bundesland",
        "bundeslandkanton",
        "etat",
        "estado",
        "provincia",
    ),
    "zip": _address(
        "zip", "zipcode", "postalcode", "postcode", "zippostalcode", "postleitzahl", "plz", "codepostal", "codigopostal"
    ),
}
_COUNTRY = _address("country", "countryregion", "countrycode", "land", "landregion", "pays", "pais")
_FULL_NAME = (
    "name",
    "fullname",
    "fn",
    "personname",
    "contactname",
    "displayname",
    "nomcomplet",
    "nombrecompleto",
    "vollstandigername",
)

# Phone headers (normalized). Numbered repeats ("Business Phone 2") match after the digits go.
_PHONES = frozenset(
    {
        "phone",
        "phonenumber",
        "telephone",
        "telephonenumber",
        "tel",
        "mobile",
        "mobilephone",
        "mobilephonenumber",
        "mobilenumber",
        "cell",
        "cellphone",
        "cellular",
        "cellphonenumber",
        "businessphone",
        "homephone",
        "otherphone",
        "primaryphone",
        "companymainphone",
        "carphone",
        "workphone",
        "mainphone",
        "phonework",
        "phonehome",
        "phonemobile",
        "phoneother",
        "personphone",
        "personphonework",
        "personphonemobile",
        "personphonehome",
        "personphoneother",
        "contactphone",
        "contactnumber",
        "mobiltelefon",
        "telefongeschaftlich",
        "telefonprivat",
        "weiterestelefon",
        "haupttelefon",
        "handy",
        "telefon",
        "autotelefon",
        "telefonfirma",
        "telephonemobile",
        "telephonebureau",
        "telephonedomicile",
        "telephoneprincipal",
        "portable",
        "telefono",
        "movil",
        "telefonomovil",
        "celular",
        "telefonoparticular",
        "telefonodeltrabajo",
        "telefonocelular",
    }
)
_PHONE_PATTERNS = (
    re.compile(r"phone\d+value"),  # Google: "Phone 1 - Value"
    re.compile(r"tel(?:type[a-z]+)?"),  # vCard: "TEL;TYPE=CELL", "TEL;TYPE=WORK,VOICE"
)
_MOBILE_MARKERS = ("mobil", "cell", "movil", "portable", "handy", "celular")


def normalize_header(name: str) -> str:
    """Comparable key: NFKC, accents dropped, casefolded, only letters and digits kept."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return re.sub(r"[\W_]+", "", text)


@dataclass(frozen=True)
class ColumnPlan:
    """Where each contact field lives in the header row."""

    fields: dict[str, int]
    phones: list[int]
    country: int | None
    full_name: int | None


def _is_phone(key: str) -> bool:
    base = key.rstrip("0123456789")
    return base in _PHONES or any(p.fullmatch(key) for p in _PHONE_PATTERNS)


def _is_mobile(key: str) -> bool:
    return any(marker in key for marker in _MOBILE_MARKERS)


def _first(keys: list[str], synonyms: tuple[str, ...]) -> int | None:
    """Position of the best synonym present (leftmost among equals), or None."""
    positions: dict[str, int] = {}
    for position, key in enumerate(keys):
        positions.setdefault(key, position)
    return next((positions[s] for s in synonyms if s in positions), None)


def _position(header: list[str], wanted: str) -> int | None:
    """Position of a header named exactly, else by normalized key; None when absent."""
    if wanted in header:
        return header.index(wanted)
    key = normalize_header(wanted)
    keys = [normalize_header(h) for h in header]
    return keys.index(key) if key and key in keys else None


def _apply_mapping(plan: ColumnPlan, header: list[str], mapping: Mapping[str, str], source: str) -> ColumnPlan:
    found = ", ".join(repr(h) for h in header)
    fields, phones = dict(plan.fields), plan.phones
    country, full_name = plan.country, plan.full_name
    for field, wanted in mapping.items():
        if field not in MAPPABLE_FIELDS:
            raise ColumnMappingError(
                f"{source}: column_mapping has unknown field {field!r}; known fields are {', '.join(MAPPABLE_FIELDS)}"
            )
        position = _position(header, str(wanted))
        if position is None:
            raise ColumnMappingError(
                f"{source}: column_mapping {field!r}: {wanted!r} is not a header of this file; headers were: {found}"
            )
        if field == "phone":
            phones = [position]
        elif field == "country":
            country = position
        elif field == "full_name":
            full_name = position
            # An explicit full name beats name parts found only by synonym.
            for part in ("firstname", "lastname"):
                if part not in mapping:
                    fields.pop(part, None)
        else:
            fields[field] = position
    return ColumnPlan(fields=fields, phones=phones, country=country, full_name=full_name)


def plan_columns(header: list[str], mapping: Mapping[str, str] | None, source: str) -> ColumnPlan:
    """Find each contact field, the phone columns (mobile first) and country/full-name columns.

    Raises ColumnMappingError for a bad explicit mapping or when no phone column is found.
    """
    keys = [normalize_header(h) for h in header]
    fields = {f: p for f, syn in _SYNONYMS.items() if (p := _first(keys, syn)) is not None}
    phone_positions = [i for i, k in enumerate(keys) if _is_phone(k)]
    phones = [i for i in phone_positions if _is_mobile(keys[i])] + [
        i for i in phone_positions if not _is_mobile(keys[i])
    ]
    plan = ColumnPlan(fields=fields, phones=phones, country=_first(keys, _COUNTRY), full_name=_first(keys, _FULL_NAME))
    if mapping:
        plan = _apply_mapping(plan, header, mapping, source)
    if not plan.phones:
        found = ", ".join(repr(h) for h in header)
        raise ColumnMappingError(
            f"{source}: no phone column found; headers were: {found}; "
            "map one with column_mapping={'phone': '<header>'}"
        )
    return plan


# The common full names, plain Latin words ("Ann Lee", "Mary Ann Smith", "Jean-Luc Picard") or
# "Last, First" ("Lovelace, Ada Mary"): nameparser reads them as given name, middle names, family
# name, which is the split at the last space or at the comma. RE2 syntax, for pyarrow.
# Distinct names nameparser reads per chunk: a chunk takes ~1-2 s, so a file needs thousands of
# such names before forked workers (both cores) pay off.
NAME_CHUNK = 10_000
_PLAIN_WORD = r"\p{Latin}+(?:-\p{Latin}+)*"
_PLAIN_NAMES = (
    rf"^(?P<first>{_PLAIN_WORD}(?: {_PLAIN_WORD})*) (?P<last>{_PLAIN_WORD})$",
    rf"^(?P<last>{_PLAIN_WORD}(?: {_PLAIN_WORD})*), (?P<first>{_PLAIN_WORD}(?: {_PLAIN_WORD})*)$",
)
# Capitals after the comma of a mixed-case name, which nameparser may read as a credential
# ("Smith Jones, MBA"); a name in one case is exempt.
_CAPS_AFTER_COMMA = r",.*\p{Lu}\p{Lu}"
# Roman numerals nameparser may read as a suffix ("Henry Ford II"), after lowercasing; its
# case-insensitive Python regex also takes the dotless "ı" for "i".
_ROMAN = r"^(?:x|ix|iv|v?[iı]{0,3})$"


@functools.cache
def _name_vocabulary() -> pa.Array:
    """Every word nameparser gives a meaning to (titles, suffixes, particles, conjunctions, …), lowercase.

    A plain name holding none of them is split as nameparser splits it (see ``_PLAIN_NAMES``;
    contact_import_tests/mapping/test_columns.py checks this against nameparser itself).
    """
    lexicon = nameparser.Lexicon.default()
    entries = (
        e for f in dataclasses.fields(lexicon) if isinstance(v := getattr(lexicon, f.name), frozenset) for e in v
    )
    return pa.array(sorted({w for e in entries for w in re.split(r"[\s-]+", e.lower()) if w}))


def _parse_name(name: str) -> tuple[str, str]:
    """nameparser's reading of one name as (first, last): middle names join the given name, a
    suffix stays with the family name, titles and nicknames are dropped."""
    parsed = nameparser.parse(name)
    first = " ".join(p for p in (parsed.given, parsed.middle) if p)
    last = " ".join(p for p in (parsed.family, parsed.suffix) if p)
    # A title or suffix alone ("Dr.") is still the only name the row has.
    return (first, last) if first or last else (" ".join(name.split()), "")


def _split_names(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(first, last) per full name, as nameparser splits it: "Dr. Ada Lovelace" → (Ada, Lovelace),
    "John Smith Jr." → (John, Smith Jr.), "Lovelace, Ada" → (Ada, Lovelace).

    nameparser costs ~0.2 ms a name, so plain names are split in Arrow (see ``_PLAIN_NAMES``) and
    nameparser reads each other distinct name once.
    """
    names = pa.array(full, type=pa.large_string())
    if isinstance(names, pa.ChunkedArray):  # a column pandas holds in several chunks (or none)
        names = names.combine_chunks()
    shapes = [pc.extract_regex(names, pattern) for pattern in _PLAIN_NAMES]
    fast = {f: pc.coalesce(*(pc.struct_field(parts, f) for parts in shapes)) for f in ("first", "last")}
    credential = pc.and_(pc.match_substring_regex(names, _CAPS_AFTER_COMMA), pc.match_substring_regex(names, r"\p{Ll}"))
    plain = pc.and_not(fast["first"].is_valid(), credential).to_numpy(zero_copy_only=False)
    if plain.any():
        words = pc.split_pattern_regex(pc.utf8_lower(names.filter(plain)), ",? |-")
        flat = pc.list_flatten(words)
        special = pc.or_(pc.is_in(flat, value_set=_name_vocabulary()), pc.match_substring_regex(flat, _ROMAN))
        parents = pc.list_parent_indices(words).to_numpy(zero_copy_only=False)
        plain[np.flatnonzero(plain)[np.unique(parents[special.to_numpy(zero_copy_only=False)])]] = False
    rest = pc.unique(names.filter(pa.array(~plain & (pc.utf8_length(names).to_numpy(zero_copy_only=False) > 0))))
    distinct = rest.to_pylist()
    parsed = [
        pair
        for part in map_chunks(
            lambda start: [_parse_name(name) for name in distinct[start : start + NAME_CHUNK]],
            len(distinct),
            NAME_CHUNK,
        )
        for pair in part
    ]
    at = pc.index_in(names, value_set=rest)
    split = []
    for field, column in (("first", 0), ("last", 1)):
        parsed_part = pc.take(pa.array([p[column] for p in parsed], type=pa.large_string()), at)
        part = pc.fill_null(pc.if_else(pa.array(plain), fast[field], parsed_part), "")
        series = text_column([part])
        series.index = full.index
        split.append(series)
    return split[0], split[1]


def apply_plan(frame: pd.DataFrame, plan: ColumnPlan) -> pd.DataFrame:
    """Contact fields + phone_raw + country_raw as stripped str columns ('' when absent)."""
    empty = pd.Series("", index=frame.index, dtype=str)

    def column(position: int | None) -> pd.Series:
        if position is None:
            return empty
        return frame[str(position)].fillna("").astype(str).str.strip()

    out = {field: column(plan.fields.get(field)) for field in CONTACT_FIELDS}
    if "firstname" not in plan.fields and "lastname" not in plan.fields and plan.full_name is not None:
        out["firstname"], out["lastname"] = _split_names(column(plan.full_name))

    phone = column(plan.phones[0]) if plan.phones else empty
    for position in plan.phones[1:]:
        phone = pd.Series(np.where(phone == "", column(position), phone), index=frame.index, dtype=str)
    out["phone_raw"] = phone
    out["country_raw"] = column(plan.country)
    return pd.DataFrame(out, index=frame.index, columns=list(OUTPUT_COLUMNS))
