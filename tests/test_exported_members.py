"""The public surface is gated: adding or removing a name is a deliberate change."""

import treasury


def test_public_api_is_pinned_and_sorted() -> None:
    assert treasury.__all__ == sorted(treasury.__all__)
    assert treasury.__all__ == [
        "ExchangeError", "ExecState", "OperationNotPermitted", "OutcomeUnknown", "ParameterError",
        "Permission", "PolicyDenied", "RateClass", "RetryStrategy", "RunState", "Settings", "StepState",
        "TreasuryError", "WorkflowInvalid", "__version__",
    ]
    for name in treasury.__all__:
        assert hasattr(treasury, name), name
