"""Invalid UTF-8 through HTTP: the same 400 for every body form, and nothing stored, altered or not.

Latin-1 is what an old PHP service sends (``metadata[name]=Zo%EB``); storing it as
``"Zo\\ufffd"`` would change client data silently, and PHP's json_encode throws on it.
"""

from __future__ import annotations

import gzip

import pytest

from tests.trace_service.http.test_ingest import Ingest

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("body", "headers", "named"),
    [
        (b"event_key=a&metadata%5Bname%5D=Zo%EB", FORM, "form field 'metadata[name]': its value"),
        (b"event_key=a&metadata%5BZo%EB%5D=1", FORM, "form field 'metadata[Zo\\xeb]': its name"),
        (b"event_key=a&metadata[name]=Zo\xeb", FORM, "form field 'metadata[name]': its value"),
        (gzip.compress(b"event_key=a&metadata%5Bname%5D=Zo%EB"), {**FORM, "Content-Encoding": "gzip"},
         "form field 'metadata[name]': its value"),
        (b'{"event_key":"a","metadata":{"name":"Zo\xeb"}}', {"Content-Type": "application/json"},
         "not valid UTF-8 at byte 39"),
    ],
)
def test_invalid_utf8_is_refused_with_400_naming_it_and_nothing_is_stored(
    ingest: Ingest, body: bytes, headers: dict[str, str], named: str
) -> None:
    response = ingest.post(data=body, headers=headers)
    assert response.status_code == 400, response.json
    assert named in response.json["error"] and "UTF-8" in response.json["error"]
    assert ingest.stored() == []


def test_a_latin1_charset_is_refused_with_415_asking_for_utf8(ingest: Ingest) -> None:
    response = ingest.post(data="event_key=a&metadata%5Bname%5D=Zo%EB",
                           headers={"Content-Type": "application/x-www-form-urlencoded; charset=ISO-8859-1"})
    assert response.status_code == 415
    assert "charset 'ISO-8859-1' is not supported: send the body in UTF-8" in response.json["error"]
    assert ingest.stored() == []


def test_the_same_name_in_utf8_is_stored_exactly(ingest: Ingest) -> None:
    response = ingest.post(data="event_key=a&metadata%5Bname%5D=Zo%C3%AB", headers=FORM)
    assert response.status_code == 202
    (row,) = ingest.stored()
    assert row.metadata == {"name": "Zoë"}
