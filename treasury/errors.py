"""The one error tree of treasury.

::

    TreasuryError
    ├── ConfigError                 a settings or config file is wrong (names file and field)
    │   └── FileRefused             a file is missing, unreadable, too large or not UTF-8 text
    ├── ParameterError              an operation or CLI parameter is wrong (names the parameter)
    ├── OperationNotPermitted       the key profile lacks the operation's permission; nothing sent
    ├── UnknownOperation            no operation of that name in the registry
    ├── WorkflowError
    │   ├── WorkflowInvalid         a workflow file has problems (all of them, located)
    │   ├── RunStateError           the run is not in a state that allows the action
    │   │   ├── UnknownRun          no run with that id (a usage error: exit 2)
    │   │   └── UnknownStep         the run has no step with that id (exit 2)
    │   ├── ApprovalRefused         an approval/rejection that the rules refuse
    │   └── DecisionRefused         a signed decision refused at the door (signature, role, digest, age, nonce)
    ├── PolicyDenied                a policy rule refuses the operation (rule and numbers)
    ├── ExecutionError
    │   ├── DigestMismatch          what is about to be sent differs from what was approved
    │   └── NeedsAttention          a person must decide; carries a plain reason
    ├── AuditError
    │   └── ChainBroken             the audit chain does not verify (names the first bad seq)
    └── ExchangeError               anything from talking to HashKey (status, code, op, client id)
        ├── NotSent                 the request never left (connect failure): safe to retry
        ├── ExchangeHalted          refused locally: the key is suspended or the host is banned
        ├── RateLimited             429, code 0003 or -3145: rejected, safe to retry later
        ├── Banned                  418: the host is banned; everything stops until a person resumes
        ├── OutcomeUnknown          5xx, timeout or reset after sending, -1000/-1001/-1006/...
        └── Rejected                a definite answer: the exchange did not do it
            ├── ExchangePermissionDenied   -1005, -3117, 0202, ...
            ├── AuthenticationFailed       signature, key or timestamp
            │   └── ClockSkew              -1021 (timestamp outside recvWindow)
            ├── DuplicateClientId          -1141, -1024, -4013: already done, look it up
            └── NotFound                   0211 order not found

Every ``ExchangeError`` says whether retrying is safe (``retry_safe``) and whether
the outcome is unknown (``outcome_unknown``). Messages never contain secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class TreasuryError(Exception):
    """Root of every error raised on purpose by treasury."""

    exit_code: int = 1


class ConfigError(TreasuryError):
    """A configuration file or setting is invalid. ``source`` names the file, ``field`` the path."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = ": ".join(p for p in (source, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class FileRefused(ConfigError):
    """A file could not be read as asked (``treasury.files``): the message starts with the file.

    ``missing`` is True when it does not exist, ``too_large`` when it is over the limit (its
    ``size`` when known); ``line``/``col`` (1-based) locate bytes that are not UTF-8.
    """

    def __init__(self, path: str, reason: str, *, missing: bool = False, too_large: bool = False,
                 line: int | None = None, col: int | None = None, size: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.missing = missing
        self.too_large = too_large
        self.line = line
        self.col = col
        self.size = size
        where = f"{path}:{line}:{col}" if line is not None else path
        super().__init__(f"{where}: {reason}")
        self.source = path


class ParameterError(TreasuryError):
    """A parameter has a bad value. ``param`` names it."""

    exit_code = 2

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.reason = message
        super().__init__(f"parameter {param!r} {message}")


class UnknownOperation(TreasuryError):
    exit_code = 2

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        self.name = name
        hint = f"; known operations: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown operation {name!r}{hint}")


class OperationNotPermitted(TreasuryError):
    """Local refusal: the profile lacks the permission. No request was sent."""

    exit_code = 2

    def __init__(self, operation: str, profile: str, permission: str) -> None:
        self.operation = operation
        self.profile = profile
        self.permission = permission
        super().__init__(
            f"operation {operation!r} needs permission {permission!r}, "
            f"which key profile {profile!r} does not have; nothing was sent"
        )


# --------------------------------------------------------------------------- workflows


class WorkflowError(TreasuryError):
    pass


@dataclass(frozen=True)
class Problem:
    """One located problem in a file: ``FILE:LINE:COL: message`` (line/col are 1-based)."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {self.message}{where}"


class WorkflowInvalid(WorkflowError):
    exit_code = 2

    def __init__(self, problems: Sequence[Problem], *, partial: Any = None,
                 dropped_steps: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        # a LoadedWorkflow of the parts that passed the schema (unknown fields left out, broken
        # steps dropped, their ids in ``dropped_steps``), so that `validate` can still report
        # the rest in the same pass
        self.partial = partial
        self.dropped_steps = tuple(dropped_steps)
        super().__init__("\n".join(str(p) for p in self.problems))


class RunStateError(WorkflowError):
    exit_code = 1


class UnknownRun(RunStateError):
    """No run has this id."""

    exit_code = 2

    def __init__(self, run_id: str, message: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message or f"no run {run_id!r}; `treasury runs` lists the runs")


class UnknownStep(RunStateError):
    """The run has no step with this id; ``known`` lists the ones it has."""

    exit_code = 2

    def __init__(self, run_id: str, step_id: str, known: Sequence[str] = ()) -> None:
        self.run_id = run_id
        self.step_id = step_id
        hint = f"; its steps: {', '.join(known)}" if known else ""
        super().__init__(f"run {run_id!r} has no step {step_id!r}{hint}")


class ApprovalRefused(WorkflowError):
    exit_code = 1


class DecisionRefused(WorkflowError):
    """A human decision that is not authenticated: bad or missing signature, a key that is not
    the person's, a missing role, digests that are not the current ones, too old, or a reused
    nonce. Nothing is recorded as a decision (exit 2)."""

    exit_code = 2


class PolicyDenied(TreasuryError):
    exit_code = 1

    def __init__(self, rule: str, message: str, details: dict[str, Any] | None = None) -> None:
        self.rule = rule
        self.details = details or {}
        super().__init__(f"policy {rule}: {message}")


# --------------------------------------------------------------------------- execution


class ExecutionError(TreasuryError):
    pass


class DigestMismatch(ExecutionError):
    def __init__(self, step_id: str, approved: str, actual: str) -> None:
        self.step_id = step_id
        self.approved = approved
        self.actual = actual
        super().__init__(
            f"step {step_id!r}: parameters differ from what was approved "
            f"(approved digest {approved[:16]}…, about to send {actual[:16]}…); nothing was sent"
        )


class NeedsAttention(ExecutionError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AuditError(TreasuryError):
    pass


class ChainBroken(AuditError):
    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"audit chain broken at seq {seq}: {reason}")


# --------------------------------------------------------------------------- exchange


class ExchangeError(TreasuryError):
    """An error from talking to the exchange.

    Attributes:
        status: HTTP status, or None when no answer arrived.
        code: the exchange's ``code`` as a string (``"-1171"``), or None.
        msg: the exchange's ``msg`` text.
        operation: the operation name.
        client_id: the client id sent with the request, if any.
        key_profile: the key profile the request was signed with (set by the client).
    """

    retry_safe: bool = False
    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        msg: str | None = None,
        operation: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.msg = msg
        self.operation = operation
        self.client_id = client_id
        self.key_profile: str | None = None
        parts = [message]
        if operation:
            parts.append(f"operation={operation}")
        if client_id:
            parts.append(f"client_id={client_id}")
        if status is not None:
            parts.append(f"status={status}")
        if code is not None:
            parts.append(f"code={code}")
        if msg:
            parts.append(f"msg={msg!r}")
        super().__init__(" ".join(parts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "status": self.status,
            "code": self.code,
            "msg": self.msg,
            "operation": self.operation,
            "client_id": self.client_id,
            "key_profile": self.key_profile,
            "retry_safe": self.retry_safe,
            "outcome_unknown": self.outcome_unknown,
            "message": str(self),
        }


    def name_profile(self, name: str, api_key: str) -> None:
        """Record which key profile the request was signed with; errors about the key itself
        (authentication, permission) also say so in their message."""
        if self.key_profile is None:
            self.key_profile = name


class NotSent(ExchangeError):
    retry_safe = True


class ExchangeHalted(ExchangeError):
    """Refused locally because the key is suspended (after 429) or the host is banned (418)."""

    retry_safe = False


class RateLimited(ExchangeError):
    retry_safe = True


class Banned(ExchangeError):
    retry_safe = False


class OutcomeUnknown(ExchangeError):
    outcome_unknown = True


class Rejected(ExchangeError):
    pass


class ExchangePermissionDenied(Rejected):
    def name_profile(self, name: str, api_key: str) -> None:
        """The exchange says the key may not do this: name the profile whose permissions to compare."""
        if self.key_profile is not None:
            return
        self.key_profile = name
        rest = self.args[0] if self.args else ""
        self.args = (f"key profile {name!r} (API key {api_key}): {rest}; `treasury keys check` compares "
                     "each profile's permissions with what the exchange allows the key",)


class AuthenticationFailed(Rejected):
    def name_profile(self, name: str, api_key: str) -> None:
        """Lead with what to check: this profile's API key and secret (the secret is never shown)."""
        if self.key_profile is not None:
            return
        self.key_profile = name
        rest = self.args[0] if self.args else ""
        self.args = (f"key profile {name!r} (API key {api_key}): {rest}; check that the profile's secret "
                     "(secret_env or secret_file in keys.yaml) is the one issued with this API key, and "
                     "that the key is still active on the exchange",)


class ClockSkew(AuthenticationFailed):
    def name_profile(self, name: str, api_key: str) -> None:
        ExchangeError.name_profile(self, name, api_key)  # the clock, not the secret, is the problem


class DuplicateClientId(Rejected):
    """The client id was already used: the operation exists, so look it up."""


class NotFound(Rejected):
    pass
