"""Numbers shown to people are rounded to 12 significant digits; values in code stay exact.

Issue 18: certificates printed ``0.9999999999999999``. The REST API and the SDK's attributes
keep the exact floats; the ``repr``/``str`` of response models and the ``privflow-client``
output round them (``privflow_client._display``).
"""

from __future__ import annotations

import json
import math

from privflow_client import Certificate, LedgerEntry, Release, Spend
from privflow_client._cli import _output
from privflow_client._display import rounded

NOISY = sum([0.1] * 10)  # ten charges of 0.1: 0.9999999999999999


def test_rounded_keeps_12_significant_digits_and_drops_float_noise() -> None:
    assert repr(NOISY) == "0.9999999999999999"
    assert rounded(NOISY) == 1.0
    assert rounded(0.7 / 7) == 0.1 and repr(0.7 / 7) == "0.09999999999999999"
    assert rounded(sum([0.1] * 7)) == 0.7
    assert rounded(4.6999999999999975) == 4.7
    assert rounded(1e-06) == 1e-06 and rounded(3.1622776601683794e-12) == 3.16227766017e-12
    assert rounded(0.123456789012) == 0.123456789012  # 12 digits survive
    assert rounded(0.1234567890123) == 0.123456789012
    assert math.isnan(rounded(math.nan)) and rounded(math.inf) == math.inf
    assert (
        rounded(True) is True
        and rounded(3) == 3
        and rounded("0.9999999999999999") == ("0.9999999999999999")
    )
    nested = {"a": [NOISY, (0.7 / 7, "x")], "b": {"c": 4.6999999999999975}}
    assert rounded(nested) == {"a": [1.0, (0.1, "x")], "b": {"c": 4.7}}


def _release() -> Release:
    certificate = {
        "scope": "exact",
        "bound": "exact base-2 exponential mechanism",
        "pure_dp": {"epsilon": NOISY},
        "approx_dp": {"epsilon": NOISY, "delta": 1e-06},
        "renyi": [{"alpha": 2.0, "epsilon": 0.7 / 7}],
        "per_sample": {"pure_dp": {"epsilon": 0.7 / 7}},
        "zcdp": {"rho": 0.0012500000000000002},  # a field the SDK does not model
    }
    return Release.model_validate(
        {
            "release_id": "rel_1",
            "dataset_id": "ds_1",
            "samples": [[42.000000000000001]],
            "certificate": certificate,
            "charged": {"epsilon": NOISY, "delta": 0.0},
        }
    )


def test_model_repr_and_str_round_but_attributes_stay_exact() -> None:
    release = _release()
    cert = release.certificate
    for text in (repr(release), str(release), repr(cert), str(cert)):
        assert "0.9999999999999999" not in text and "0.09999999999999999" not in text, text
        assert "00000000000002" not in text, text
    assert "PureDP(epsilon=1.0)" in repr(cert)
    assert "RenyiPoint(alpha=2.0, epsilon=0.1)" in repr(cert)
    assert "'rho': 0.00125" in repr(cert)  # extras too
    assert repr(Spend(epsilon=4.6999999999999975, delta=1e-06)) == "Spend(epsilon=4.7, delta=1e-06)"
    # The values themselves are the service's, to the last bit.
    assert cert.pure_dp is not None and cert.pure_dp.epsilon == NOISY
    assert release.charged.epsilon == NOISY
    assert Certificate.model_validate(cert.model_dump()) == cert
    assert json.loads(release.model_dump_json())["charged"]["epsilon"] == NOISY


def test_ledger_entries_print_rounded_too() -> None:
    entry = LedgerEntry.model_validate(
        {
            "release_id": "rel_1",
            "key_id": "key_1",
            "utility": {"family": "quantile", "column": "age", "q": 0.30000000000000004},
            "charged": {"epsilon": 0.7 / 7, "delta": 0.0},
            "certificate": {"scope": "exact", "bound": "b", "pure_dp": {"epsilon": 0.7 / 7}},
            "status": "succeeded",
        }
    )
    assert "0.09999999999999999" not in repr(entry) and "'q': 0.3" in repr(entry)


def test_the_command_line_prints_12_digits() -> None:
    result = {
        "dataset_id": "ds_1",
        "spent": {"epsilon": 4.6999999999999975, "delta": 0.0},
        "remaining": {"epsilon": 45.300000000000004, "delta": 1e-06},
    }
    assert json.loads(_output(result, None)) == {
        "dataset_id": "ds_1",
        "spent": {"epsilon": 4.7, "delta": 0.0},
        "remaining": {"epsilon": 45.3, "delta": 1e-06},
    }
    assert _output(result, "remaining.epsilon") == "45.3"
    assert _output(result, "spent") == '{"epsilon": 4.7, "delta": 0.0}'
    assert _output(result, "dataset_id") == "ds_1"
