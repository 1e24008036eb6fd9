"""The SDK's custom utility (issue 19): ``releases.create`` with ``family: "custom"`` against a
real ``privflow serve``, and the local ``check_loss`` agreeing with the service's grammar."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from privflow_client import (
    Client,
    CustomUtility,
    Dataset,
    InvalidRequest,
    LossSyntaxError,
    check_loss,
)

from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.expression import check_loss as service_check
from tests.service.hostile_losses import HOSTILE

ACCEPTED = [
    "huber(theta[0] + theta[1] * x - y, 1.0)",
    "where(x < theta[0], (x - theta[0])**2, 0.5 * abs(x - theta[1]))",
    "log1p(exp(-y * (theta[0] * x + theta[1]))) + softplus(theta[0]) ** -2 + pi",
    "min(x, y, theta[0]) + clip(x - theta[0], -1, 1) + sqrt(x * x + 1) - -theta[1] / 3",
]


@pytest.mark.parametrize("loss", ACCEPTED + HOSTILE, ids=lambda s: repr(s[:20]) + f"..{len(s)}")
def test_local_check_agrees_with_the_service(loss: str) -> None:
    try:
        service_check(loss, ["x", "y"], 2)
        accepted = True
    except InvalidParameter:
        accepted = False
    if accepted:
        check_loss(loss, ["x", "y"], 2)
    else:
        with pytest.raises(LossSyntaxError):
            check_loss(loss, ["x", "y"], 2)


def test_a_custom_release_through_the_sdk(
    admin: Client, make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(epsilon=5.0)
    mean = CustomUtility(
        loss="0.5 * (theta[0] - a)**2",
        columns={"a": "age"},
        domain={"box": [[0, 100]]},
        clip=100.0,
    )
    release = admin.releases.create(dataset.id, mean, epsilon=1.0, method="exact")
    assert release.samples_array.shape == (1, 1)
    assert 0.0 <= release.samples_array[0, 0] <= 100.0
    entry = next(iter(admin.datasets.ledger(dataset.id)))
    assert entry.utility["loss"] == mean.loss and entry.utility["clip"] == 100.0
    hostile = mean.model_copy(update={"loss": "a.__class__"})
    with pytest.raises(InvalidRequest) as refused:
        admin.releases.create(dataset.id, hostile, epsilon=1.0, method="exact")
    assert [e["field"] for e in refused.value.errors] == ["utility.loss"]
    assert admin.datasets.budget(dataset.id).spent.epsilon == 1.0
