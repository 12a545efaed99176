"""The error hierarchy: one root, leaves that also inherit the fitting builtin."""

from __future__ import annotations

import pytest

import conveyor
from conveyor.core import control, errors


def _public_exceptions() -> list[type[BaseException]]:
    """What Conveyor raises (the handler's own signals, Fail and RetryIn, left out)."""
    found = []
    for name in conveyor.__all__:
        value = getattr(conveyor, name)
        is_error = isinstance(value, type) and issubclass(value, BaseException)
        if is_error and value.__module__ != control.__name__:
            found.append(value)
    return found


def test_handler_signals_are_not_conveyor_errors() -> None:
    """A handler that wraps its client calls in ``except ConveyorError`` must not
    swallow its own ``raise Fail(...)`` or ``raise RetryIn(...)``."""
    for signal in (conveyor.Fail, conveyor.RetryIn):
        assert not issubclass(signal, conveyor.ConveyorError)
        assert issubclass(signal, Exception)


def test_public_exceptions_are_found() -> None:
    names = {cls.__name__ for cls in _public_exceptions()}
    assert {
        "ConveyorError",
        "ConfigurationError",
        "UnsupportedURL",
        "MissingExtra",
        "InvalidJobOptions",
        "HandlerError",
        "BackendError",
        "BackendUnavailable",
        "UnknownType",
        "PayloadError",
        "PayloadTypeError",
        "PayloadTooLarge",
        "PayloadDecodeError",
        "JobNotFound",
        "InvalidState",
        "NotInJob",
        "LeaseLost",
    } <= names


@pytest.mark.parametrize("cls", _public_exceptions(), ids=lambda c: c.__name__)
def test_every_public_error_is_a_conveyor_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, conveyor.ConveyorError)


def test_every_error_in_the_module_is_exported() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert defined <= set(conveyor.__all__)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (conveyor.ConfigurationError, ValueError),
        (conveyor.UnsupportedURL, ValueError),
        (conveyor.InvalidJobOptions, ValueError),
        (conveyor.HandlerError, TypeError),
        (conveyor.HandlerError, ValueError),
        (conveyor.MissingExtra, ImportError),
        (conveyor.BackendUnavailable, ConnectionError),
        (conveyor.UnknownType, LookupError),
        (conveyor.JobNotFound, LookupError),
        (conveyor.PayloadError, ValueError),
        (conveyor.PayloadTypeError, TypeError),
        (conveyor.PayloadTooLarge, ValueError),
        (conveyor.PayloadDecodeError, ValueError),
        (conveyor.NotInJob, RuntimeError),
    ],
)
def test_leaves_inherit_the_fitting_builtin(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, builtin)


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (conveyor.UnsupportedURL, conveyor.ConfigurationError),
        (conveyor.MissingExtra, conveyor.ConfigurationError),
        (conveyor.InvalidJobOptions, conveyor.ConfigurationError),
        (conveyor.HandlerError, conveyor.ConfigurationError),
        (conveyor.BackendUnavailable, conveyor.BackendError),
        (conveyor.PayloadTypeError, conveyor.PayloadError),
        (conveyor.PayloadTooLarge, conveyor.PayloadError),
        (conveyor.PayloadDecodeError, conveyor.PayloadError),
    ],
)
def test_intermediate_bases(cls: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(cls, parent)


def test_job_not_found_carries_the_id() -> None:
    exc = conveyor.JobNotFound("0190-abc")
    assert isinstance(exc, LookupError)
    assert exc.job_id == "0190-abc"
    assert str(exc) == "no job with id '0190-abc'"
    with pytest.raises(LookupError):
        raise exc


def test_invalid_state_attributes_and_message() -> None:
    exc = conveyor.InvalidState("j1", "succeeded", "cancel", "it has already settled")
    assert (exc.job_id, exc.current, exc.requested) == ("j1", "succeeded", "cancel")
    assert str(exc) == "cannot cancel job j1 while it is succeeded: it has already settled"
    assert not isinstance(exc, ValueError | LookupError)


def test_invalid_state_without_reason() -> None:
    exc = conveyor.InvalidState("j2", "queued", "retry")
    assert str(exc) == "cannot retry job j2 while it is queued"


def test_lease_lost_carries_the_id() -> None:
    exc = conveyor.LeaseLost("j3")
    assert exc.job_id == "j3"
    assert "j3" in str(exc)
    assert "no longer held" in str(exc)
