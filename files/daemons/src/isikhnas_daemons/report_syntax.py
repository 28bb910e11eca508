"""The coded field-report syntax (in the spirit of iSIKHNAS' SMS reports).

One report is one line of words separated by spaces, case-insensitive::

    DIS <location> <disease> <species>=<sick>[/<dead>] [<species>=<sick>[/<dead>] ...] [RPT[:<km>]]
    VAC <location> <disease> <species>=<vaccinated> [<species>=<vaccinated> ...] [RPT[:<km>]]
    RPT SUMMARY [<days>]
    RPT NEARBY <location> [<km>] [<days>]

``<location>`` is ``@<lat>,<lon>`` in decimal degrees (WGS 84), e.g. ``@-8.6500,115.2167``, or a registered
location code such as ``BALI-0412``. A trailing ``RPT`` on a DIS/VAC line also requests the NEARBY report
around the reported location (radius ``<km>``, default 25). See README.md for the code lists and examples.

In a message the report is the first line whose first word is a report code; quoted lines (``>``) and
everything after a signature separator (``--``) are ignored; the subject is tried after the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DISEASES: dict[str, str] = {
    "AI": "avian influenza",
    "ANTHRAX": "anthrax",
    "ASF": "African swine fever",
    "BRU": "brucellosis",
    "CSF": "classical swine fever",
    "FMD": "foot and mouth disease",
    "HS": "haemorrhagic septicaemia",
    "LSD": "lumpy skin disease",
    "RABIES": "rabies",
    "UNK": "unknown / syndrome only",
}

SPECIES: dict[str, str] = {
    "BUF": "buffalo",
    "CAT": "cattle",
    "CHI": "chicken",
    "DOG": "dog",
    "DUC": "duck",
    "GOA": "goat",
    "HOR": "horse",
    "OTH": "other",
    "PIG": "pig",
    "SHE": "sheep",
}

CODES = ("DIS", "VAC", "RPT")
REPORTS = ("SUMMARY", "NEARBY")
MAX_COUNT = 100_000
DEFAULT_DAYS = 30
MAX_DAYS = 365
DEFAULT_RADIUS_KM = 25.0
MAX_RADIUS_KM = 500.0

SYNTAX_HELP = (
    "Report formats: DIS <location> <disease> <species>=<sick>/<dead> ... [RPT] | "
    "VAC <location> <disease> <species>=<vaccinated> ... | RPT SUMMARY [days] | RPT NEARBY <location> [km] [days]. "
    "Location: @lat,lon or a location code. Example: DIS @-8.65,115.22 AI CHI=20/5 DUC=3"
)

_LOCATION_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
_COORDS = re.compile(r"^@(-?\d{1,3}(?:\.\d+)?),(-?\d{1,3}(?:\.\d+)?)$")
_COUNT_TOKEN = re.compile(r"^([A-Z]{3})=(.*)$")
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|tr)\s*:\s*)+", re.IGNORECASE)


class ReportError(ValueError):
    """A precise, user-facing syntax error: which word, and what is wrong with it."""

    def __init__(self, problem: str, *, word: int | None = None, token: str | None = None) -> None:
        self.problem = problem
        self.word = word
        self.token = token
        where = f"word {word} '{token}': " if word is not None and token is not None else ""
        super().__init__(f"{where}{problem}")


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


@dataclass(frozen=True)
class Location:
    """Either coordinates or a registered code (resolved to a point by the processor)."""

    point: Point | None = None
    code: str | None = None

    def describe(self) -> str:
        if self.code is not None:
            return self.code
        if self.point is not None:
            return f"@{self.point.lat:.5f},{self.point.lon:.5f}"
        return "?"


@dataclass(frozen=True)
class Count:
    species: str
    measure: str  # "sick", "dead" or "vaccinated"
    n: int


@dataclass(frozen=True)
class ReportRequest:
    report: str  # "summary" or "nearby"
    days: int = DEFAULT_DAYS
    location: Location | None = None
    radius_km: float | None = None


@dataclass(frozen=True)
class FieldReport:
    kind: str  # "DIS" or "VAC"
    location: Location
    disease: str
    counts: tuple[Count, ...]
    request: ReportRequest | None = None

    def describe(self) -> str:
        parts: dict[str, list[str]] = {}
        for count in self.counts:
            parts.setdefault(count.species, []).append(f"{count.measure} {count.n}")
        lines = "; ".join(f"{SPECIES[s].capitalize()}: {', '.join(v)}" for s, v in parts.items())
        return f"{self.kind} {self.disease} ({DISEASES[self.disease]}) at {self.location.describe()}: {lines}"


Parsed = FieldReport | ReportRequest


def _int(word: int, token: str, text: str, what: str, lo: int, hi: int) -> int:
    if not text.isdigit():
        raise ReportError(f"{what} must be a whole number", word=word, token=token)
    value = int(text)
    if not lo <= value <= hi:
        raise ReportError(f"{what} must be between {lo} and {hi}", word=word, token=token)
    return value


def _km(word: int, token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ReportError("radius must be a number of kilometres", word=word, token=token) from None
    if not 0 < value <= MAX_RADIUS_KM:
        raise ReportError(f"radius must be more than 0 and at most {MAX_RADIUS_KM:g} km", word=word, token=token)
    return value


def parse_location(word: int, token: str) -> Location:
    match = _COORDS.match(token)
    if match:
        lat, lon = float(match.group(1)), float(match.group(2))
        if not -90 <= lat <= 90:
            raise ReportError("latitude must be between -90 and 90", word=word, token=token)
        if not -180 <= lon <= 180:
            raise ReportError("longitude must be between -180 and 180", word=word, token=token)
        return Location(point=Point(lat, lon))
    if token.startswith("@"):
        raise ReportError("coordinates must look like @-8.65,115.22 (latitude,longitude)", word=word, token=token)
    if _LOCATION_CODE.match(token):
        return Location(code=token)
    raise ReportError("expected a location: @latitude,longitude or a location code", word=word, token=token)


def _trailing_request(word: int, text: str, location: Location) -> ReportRequest | None:
    if text == "RPT":
        return ReportRequest("nearby", location=location, radius_km=DEFAULT_RADIUS_KM)
    if text.startswith("RPT:"):
        return ReportRequest("nearby", location=location, radius_km=_km(word, text[4:]))
    return None


def _parse_observation(words: list[str]) -> FieldReport:
    kind = words[0]
    if len(words) < 4:
        need = "<species>=<sick>/<dead>" if kind == "DIS" else "<species>=<vaccinated>"
        raise ReportError(f"{kind} needs a location, a disease and at least one {need}")
    location = parse_location(2, words[1])
    disease = words[2]
    if disease not in DISEASES:
        raise ReportError(f"unknown disease; use one of {', '.join(DISEASES)}", word=3, token=disease)
    counts: list[Count] = []
    seen: set[str] = set()
    request: ReportRequest | None = None
    for index, token in enumerate(words[3:], start=4):
        if request is not None:
            raise ReportError("nothing may follow RPT", word=index, token=token)
        request = _trailing_request(index, token, location)
        if request is not None:
            continue
        match = _COUNT_TOKEN.match(token)
        if not match:
            raise ReportError("expected <species>=<count>, e.g. CAT=3/1", word=index, token=token)
        species, values = match.groups()
        if species not in SPECIES:
            raise ReportError(f"unknown species; use one of {', '.join(SPECIES)}", word=index, token=token)
        if species in seen:
            raise ReportError("species given twice", word=index, token=token)
        seen.add(species)
        if kind == "DIS":
            sick_text, _, dead_text = values.partition("/")
            sick = _int(index, token, sick_text, "sick count", 0, MAX_COUNT)
            dead = _int(index, token, dead_text, "dead count", 0, MAX_COUNT) if dead_text else 0
            if "/" in values and not dead_text:
                raise ReportError("dead count missing after '/'", word=index, token=token)
            if sick == 0 and dead == 0:
                raise ReportError("at least one animal must be sick or dead", word=index, token=token)
            counts += [Count(species, "sick", sick), Count(species, "dead", dead)]
        else:
            counts.append(Count(species, "vaccinated", _int(index, token, values, "vaccinated count", 1, MAX_COUNT)))
    if not counts:
        raise ReportError(f"{kind} needs at least one <species>=<count>")
    return FieldReport(kind=kind, location=location, disease=disease, counts=tuple(counts), request=request)


def _parse_request(words: list[str]) -> ReportRequest:
    if len(words) < 2:
        raise ReportError(f"RPT needs a report name: {' or '.join(REPORTS)}")
    name = words[1]
    if name == "SUMMARY":
        if len(words) > 3:
            raise ReportError("RPT SUMMARY takes only [days]", word=4, token=words[3])
        days = _int(3, words[2], words[2], "days", 1, MAX_DAYS) if len(words) == 3 else DEFAULT_DAYS
        return ReportRequest("summary", days=days)
    if name == "NEARBY":
        if len(words) < 3:
            raise ReportError("RPT NEARBY needs a location")
        if len(words) > 5:
            raise ReportError("RPT NEARBY takes only <location> [km] [days]", word=6, token=words[5])
        location = parse_location(3, words[2])
        radius = _km(4, words[3]) if len(words) >= 4 else DEFAULT_RADIUS_KM
        days = _int(5, words[4], words[4], "days", 1, MAX_DAYS) if len(words) == 5 else DEFAULT_DAYS
        return ReportRequest("nearby", days=days, location=location, radius_km=radius)
    raise ReportError(f"unknown report; use {' or '.join(REPORTS)}", word=2, token=name)


def parse_line(line: str) -> Parsed:
    """Parse one report line; raises ``ReportError``."""
    words = line.upper().split()
    if not words or words[0] not in CODES:
        raise ReportError(f"a report starts with {', '.join(CODES)}", word=1, token=words[0] if words else "")
    if words[0] == "RPT":
        return _parse_request(words)
    return _parse_observation(words)


def _candidate_lines(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line in ("--", "-- ") or raw == "-- ":
            break
        if line and not line.startswith(">"):
            lines.append(line)
    return lines


def find_report(text: str, subject: str | None = None) -> Parsed:
    """The report in a message body (then subject); raises ``ReportError`` with a precise reason."""
    candidates = _candidate_lines(text)
    if subject:
        candidates.append(_REPLY_PREFIX.sub("", subject).strip())
    for line in candidates:
        words = line.split()
        if words and words[0].upper() in CODES:
            return parse_line(line)
    raise ReportError(f"no report found: a line must start with {', '.join(CODES)}")
