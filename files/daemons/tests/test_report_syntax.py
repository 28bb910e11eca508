from __future__ import annotations

import pytest

from isikhnas_daemons.report_syntax import (
    Count,
    FieldReport,
    Location,
    Point,
    ReportError,
    ReportRequest,
    find_report,
    parse_line,
)


def test_disease_report_with_coordinates_and_trailing_request() -> None:
    parsed = parse_line("dis @-8.65,115.22 ai chi=20/5 duc=3 rpt:10")
    assert parsed == FieldReport(
        kind="DIS",
        location=Location(point=Point(-8.65, 115.22)),
        disease="AI",
        counts=(
            Count("CHI", "sick", 20),
            Count("CHI", "dead", 5),
            Count("DUC", "sick", 3),
            Count("DUC", "dead", 0),
        ),
        request=ReportRequest("nearby", location=Location(point=Point(-8.65, 115.22)), radius_km=10.0),
    )
    assert "Chicken: sick 20, dead 5" in parsed.describe()


def test_vaccination_with_location_code() -> None:
    parsed = parse_line("VAC BALI-0412 ANTHRAX CAT=40 BUF=12")
    assert isinstance(parsed, FieldReport)
    assert parsed.location == Location(code="BALI-0412")
    assert parsed.counts == (Count("CAT", "vaccinated", 40), Count("BUF", "vaccinated", 12))
    assert parsed.request is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RPT SUMMARY", ReportRequest("summary", days=30)),
        ("rpt summary 7", ReportRequest("summary", days=7)),
        (
            "RPT NEARBY @-8.6,115.2 50 14",
            ReportRequest("nearby", days=14, location=Location(point=Point(-8.6, 115.2)), radius_km=50.0),
        ),
        ("RPT NEARBY BALI-0412", ReportRequest("nearby", location=Location(code="BALI-0412"), radius_km=25.0)),
    ],
)
def test_report_requests(line: str, expected: ReportRequest) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("HELLO there", "word 1 'HELLO': a report starts with DIS, VAC, RPT"),
        ("DIS @-8.65,115.22 AI", "DIS needs a location, a disease and at least one"),
        ("DIS @-98.65,115.22 AI CHI=1", "word 2 '@-98.65,115.22': latitude must be between -90 and 90"),
        ("DIS @-8.65,215.22 AI CHI=1", "longitude must be between -180 and 180"),
        ("DIS @-8.65;115.22 AI CHI=1", "coordinates must look like @-8.65,115.22"),
        ("DIS x AI CHI=1", "word 2 'X': expected a location"),
        ("DIS @-8.65,115.22 FLU CHI=1", "word 3 'FLU': unknown disease"),
        ("DIS @-8.65,115.22 AI CHICKEN=1", "word 4 'CHICKEN=1': expected <species>=<count>"),
        ("DIS @-8.65,115.22 AI CHI=2x", "word 4 'CHI=2X': sick count must be a whole number"),
        ("DIS @-8.65,115.22 AI CHI=2/", "word 4 'CHI=2/': dead count missing"),
        ("DIS @-8.65,115.22 AI CHI=0/0", "at least one animal must be sick or dead"),
        ("DIS @-8.65,115.22 AI CHI=1 CHI=2", "word 5 'CHI=2': species given twice"),
        ("DIS @-8.65,115.22 AI ZEB=1", "word 4 'ZEB=1': unknown species"),
        ("DIS @-8.65,115.22 AI CHI=100001", "sick count must be between 0 and 100000"),
        ("DIS @-8.65,115.22 AI CHI=1 RPT CAT=2", "word 6 'CAT=2': nothing may follow RPT"),
        ("DIS @-8.65,115.22 AI CHI=1 RPT:0", "radius must be more than 0"),
        ("VAC BALI-0412 AI CHI=0", "vaccinated count must be between 1 and 100000"),
        ("RPT", "RPT needs a report name"),
        ("RPT WEEKLY", "word 2 'WEEKLY': unknown report"),
        ("RPT SUMMARY 400", "days must be between 1 and 365"),
        ("RPT NEARBY", "RPT NEARBY needs a location"),
    ],
)
def test_malformed_reports_get_precise_errors(line: str, message: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_line(line)
    assert message in str(caught.value)


def test_find_report_skips_greetings_quotes_and_signatures() -> None:
    text = "Hello team,\n\n> DIS old quoted report\nDIS @-8.65,115.22 AI CHI=2\n-- \nRPT SUMMARY\n"
    parsed = find_report(text)
    assert isinstance(parsed, FieldReport)
    assert parsed.disease == "AI"


def test_find_report_falls_back_to_the_subject() -> None:
    assert find_report("sent from my phone", "Re: FW: rpt summary 3") == ReportRequest("summary", days=3)


def test_find_report_reports_the_first_candidate_error() -> None:
    with pytest.raises(ReportError, match="unknown disease"):
        find_report("DIS @-8.65,115.22 BIRDFLU CHI=2\nDIS @-8.65,115.22 AI CHI=2")


def test_no_report_at_all() -> None:
    with pytest.raises(ReportError, match="no report found"):
        find_report("just saying hello\n-- \nDIS after signature is ignored", None)
