"""Decisions in the browser: the document page, and the POST that submits its passkey assertion.

1. A GET builds the decision document from the current state (as ``treasury decide export``
   does) and shows exactly its fields, and for a vote everything its ``params_digest``
   covers. The WebAuthn challenge is the SHA-256 of the document's text; the document is
   sealed to the session.
2. The browser asks the passkey for an assertion over that challenge and POSTs it with the
   document, the seal and the CSRF token.
3. The POST refuses a document this server did not issue to this session, says "already
   recorded" for a decision whose nonce is spent (a double click, a retried POST), refuses
   with what changed a document about a run that moved on, and otherwise hands
   ``webauthn_signed(document, assertion)`` to the service, which verifies it at the door.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from treasury.errors import ApprovalRefused, DecisionRefused, ParameterError, RunStateError
from treasury.people.decisions import SignedDecision, document_text
from treasury.web.console import Forbidden, Viewer, console_of, problem, render, viewer
from treasury.web.security import csrf_ok

VOTES = ("approve", "reject")


def challenge_of(text: str) -> bytes:
    """The WebAuthn challenge of a decision: the SHA-256 of its document's exact text."""
    return hashlib.sha256(text.encode()).digest()


def _document_page(request: Request, who: Viewer, doc: dict[str, Any], **context: Any) -> Response:
    console = console_of(request)
    text = document_text(doc)
    challenge = challenge_of(text)
    options = console.passkeys.assertion_options(who.person, challenge)
    return render(request, "decide.html", viewer=who, doc=doc, text=text, challenge_hex=challenge.hex(),
                  seal=console.seal.seal(who.session.token_hash, text), options=options,
                  has_passkey=console.passkeys.has_passkey(who.person), **context)


def vote(request: Request) -> Response:
    """GET /runs/{run_id}/approve|reject: the vote's document (a reject asks for its reason first)."""
    kind = request.path_params["kind"]
    if kind not in VOTES:
        raise HTTPException(404)
    who = viewer(request, kind)
    desk = console_of(request).desk
    run_id = request.path_params["run_id"]
    try:
        data = desk.run(run_id)
    except RunStateError as exc:
        return problem(request, 404, "No such run", str(exc), who)
    if who.person == data["requested_by"]:
        raise Forbidden(f"{who.person} requested run {run_id} and cannot vote on it (four eyes)")
    text = request.query_params.get("reason" if kind == "reject" else "comment", "").strip() or None
    if kind == "reject" and text is None:
        return render(request, "reason.html", viewer=who, run=data, kind=kind)
    step = next((s for s in data["steps"] if s["state"] == "AWAITING_APPROVAL"), None)
    if step is None:
        return problem(request, 409, "Not waiting for approval", f"run {run_id} is {data['state']}", who)
    if not desk.digest_holds(run_id, step["id"]):
        return problem(request, 409, "Parameters do not match their digest",
                       f"the stored parameters of run {run_id} no longer hash to the digest its approval binds "
                       "to; nothing can be approved (the step fails before sending)", who)
    try:
        doc = desk.document(kind, who.person, run=run_id, text=text)
    except (ApprovalRefused, DecisionRefused) as exc:
        return problem(request, 409, "Cannot decide", str(exc), who)
    return _document_page(request, who, doc, run=data, approval=desk.approval(data, step))


def resolve(request: Request) -> Response:
    """GET /runs/{run_id}/steps/{step_id}/resolve: outcome and note first, then the document."""
    who = viewer(request, "resolve")
    desk = console_of(request).desk
    run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
    try:
        data = desk.run(run_id)
    except RunStateError as exc:
        return problem(request, 404, "No such run", str(exc), who)
    step = next((s for s in data["steps"] if s["id"] == step_id), None)
    if step is None or step["state"] != "NEEDS_ATTENTION":
        return problem(request, 409, "Nothing to resolve", f"step {step_id} of run {run_id} does not need attention",
                       who)
    outcome = request.query_params.get("outcome", "")
    note = request.query_params.get("note", "").strip()
    if outcome not in ("succeeded", "failed") or not note:
        return render(request, "resolve.html", viewer=who, run=data, step=step)
    doc = desk.document("resolve", who.person, run=run_id, step=step_id, outcome=outcome, note=note)
    return _document_page(request, who, doc, run=data, step=step)


def schedule(request: Request) -> Response:
    """GET /schedules/{name}/pause|resume."""
    action = request.path_params["action"]
    if action not in ("pause", "resume"):
        raise HTTPException(404)
    who = viewer(request, f"schedule.{action}")
    name = request.path_params["name"]
    if name not in {row["name"] for row in console_of(request).desk.schedules()}:
        return problem(request, 404, "No such schedule", f"{name!r} is not a schedule", who)
    return _document_page(request, who, console_of(request).desk.document(f"schedule.{action}", who.person,
                                                                          schedule=name))


def lift(request: Request) -> Response:
    """GET /exchange/lift: the signed lift of a host-wide ban."""
    who = viewer(request, "exchange.resume")
    return _document_page(request, who, console_of(request).desk.document("exchange.resume", who.person))


async def submit(request: Request) -> Response:
    """POST /decisions: the document, its seal, the passkey assertion and the CSRF token."""
    form = await request.form()
    fields = {name: str(form.get(name) or "") for name in ("document", "seal", "credential", "csrf")}
    return await run_in_threadpool(_submit, request, fields)


def _submit(request: Request, fields: dict[str, str]) -> Response:
    console = console_of(request)
    text = fields["document"]
    try:
        doc = json.loads(text)
        kind = str(doc["kind"])
    except (ValueError, TypeError, KeyError):
        return problem(request, 400, "Not a decision", "the form holds no decision document")
    who = viewer(request, kind)
    if not csrf_ok(who.session.csrf, fields["csrf"]):
        return problem(request, 403, "Refused", "the form's CSRF token is missing or wrong; reload the page", who)
    if not console.seal.holds(who.session.token_hash, text, fields["seal"]):
        return problem(request, 403, "Refused", "this document was not issued to your session (or it is too old); "
                       "open the decision again", who)
    if doc.get("person") != who.person:
        return problem(request, 403, "Refused", "the document names someone else", who)
    desk = console.desk
    run_id = doc.get("run")
    if desk.recorded(str(doc.get("nonce"))):
        return render(request, "decided.html", viewer=who, doc=doc, outcome="duplicate",
                      message="This decision is already recorded; it counts once.", run_id=run_id)
    try:
        changed = desk.changes(doc)
    except RunStateError as exc:
        return problem(request, 404, "No such run", str(exc), who)
    if changed:
        return render(request, "changed.html", code=409, viewer=who, doc=doc, changes=changed, run_id=run_id)
    if not fields["credential"]:
        return problem(request, 400, "No passkey signature", "the form carries no passkey assertion", who)
    try:
        signed: SignedDecision = console.passkeys.signed(text, fields["credential"])
        decided = desk.submit(signed)
    except (DecisionRefused, ApprovalRefused) as exc:
        return problem(request, 409, "Refused", str(exc), who, run_id=run_id)
    except ParameterError as exc:
        return problem(request, 400, "Refused", str(exc), who, run_id=run_id)
    message = ("This decision is already recorded; it counts once." if decided.outcome == "duplicate"
               else decided.message or f"Recorded. The run is now {decided.state}.")
    return render(request, "decided.html", viewer=who, doc=doc, outcome=decided.outcome, message=message,
                  state=decided.state, run_id=run_id)
