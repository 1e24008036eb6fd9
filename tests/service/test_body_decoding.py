"""Large bodies are decoded and freed off the event loop without collector pauses
(``service.api._body``): the collector's state is restored, nothing stays frozen, the lists are
emptied, and decoding errors still release."""

from __future__ import annotations

import gc
import json

import pytest

from service.api import _body


def test_a_large_body_is_decoded_frozen_and_released_back_to_the_collector() -> None:
    rows = [[float(i), "a"] for i in range(3 * _body.RELEASE_CHUNK + 5)]
    body = json.dumps({"records": rows, "name": "x"}).encode()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    parsed = _body._decode_large(body)
    assert parsed["records"] == rows
    assert gc.isenabled()  # back on once no decoding is running
    assert gc.get_freeze_count() > len(rows)  # the rows are out of the collector's way
    records = parsed["records"]
    _body.release_parsed(parsed)
    assert records == [] and parsed["name"] == "x"  # the long list emptied, the rest kept
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_failed_decoding_turns_the_collector_back_on() -> None:
    with pytest.raises(json.JSONDecodeError):
        _body._decode_large(b'{"records": [1, 2,')
    assert gc.isenabled()
    _body.release_parsed(None)  # what the route does for a body that did not decode
    assert gc.get_freeze_count() == 0
    _body.release_parsed(None)  # a release without a decoding (cancelled) is harmless
    assert gc.isenabled() and gc.get_freeze_count() == 0
