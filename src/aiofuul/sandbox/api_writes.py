"""The writes beyond events, applied to :class:`~aiofuul.sandbox.state.FuulState`, so that
the reads show them: a referrer set by ``PUT user-referrers`` is what ``user/referrer``
answers and what the payouts of the user's events follow; a code used counts in its
``uses`` and ``remaining_uses``; an audience entry shows in the user's segments.

:data:`WRITES` is the sandbox's own table of them, as :data:`~aiofuul.sandbox.api_reads.ROUTES`
is of the reads: each write's method, path, lane (it shares its group's rate limit with
the reads), query parameters and body fields (judged by
:mod:`~aiofuul.sandbox.api_query`), and its answer. Every write needs a service-role key
(403 otherwise). The API publishes no answer for most writes: the sandbox answers the
state it made, with ``"changed": false`` when the write found it already so (which
``aiofuul referrers import`` counts as *unchanged*).

The rules a write can break after its parameters are judged: a code that does not exist
(404); a self-referral, a referral code of someone else than the referrer, a user using
its own code (400); a code at its ``max_uses``, a user already referred, removing the
referrer of a user who redeemed a code (422).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..engine.limits import LaneName
from ..wire.models import User
from .api_query import Param, judge_body, judge_query
from .api_reads import _code_row, key_refusal
from .parsing import BadRequest
from .state import Code, FuulState

__all__ = ["WRITES", "WriteRoute", "answer_write"]

Values = dict[str, Any]
WriteAnswer = Callable[[FuulState, Values, Values, Mapping[str, str]], tuple[int, Any]]


@dataclass(frozen=True)
class WriteRoute:
    """One write of the table (see the module docstring); ``body`` None: no body is read."""

    method: str
    path: str
    lane: LaneName
    params: Mapping[str, Param]
    body: Mapping[str, Param] | None
    answer: WriteAnswer
    needs: str = "service-role"


def _error(status: int, message: str) -> tuple[int, Any]:
    names = {404: "Not Found", 422: "Unprocessable Entity"}
    return status, {"message": message, "error": names[status], "statusCode": status}


def _user(values: Values, prefix: str = "user") -> User:
    return User(values[f"{prefix}_identifier"], values[f"{prefix}_identifier_type"])


def _uid(user: User, prefix: str = "user") -> Values:
    return {
        f"{prefix}_identifier": user.identifier,
        f"{prefix}_identifier_type": user.identifier_type,
    }


def _code(state: FuulState, path: Mapping[str, str]) -> Code | tuple[int, Any]:
    found = state.codes.get(path["code"])
    return found if found is not None else _error(404, "Referral code not found")


# -- users ----------------------------------------------------------------------------
def _set_referrer(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    user, referrer = _user(body), _user(body, "referrer")
    if user == referrer:
        raise BadRequest(["referrer must not be the user itself"])
    code = body.get("referral_code")
    if code is not None:
        found = state.codes.get(code)
        if found is None:
            return _error(404, "Referral code not found")
        if found.owner != referrer:
            raise BadRequest(["referral_code must be a code of the referrer"])
    changed = state.set_referrer(user, referrer, code)
    return 200, {**_uid(user), **_uid(referrer, "referrer"), "referral_code": code,
                 "changed": changed}  # fmt: skip


def _remove_referrer(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    user = _user(q)
    used = state.redemptions(user)
    if used:
        codes = ", ".join(c.code for c in used)
        return _error(422, f"User has referral code redemptions ({codes}): undo them first")
    return 200, {**_uid(user), "changed": state.remove_referrer(user)}


# -- referral codes -------------------------------------------------------------------
def _generate(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    owner = _user(q)
    made = [state.add_code(owner, max_uses=q.get("max_uses")) for _ in range(q.get("quantity", 5))]
    return 201, [{"code": c.code} for c in made]


def _use(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    found = _code(state, path)
    if not isinstance(found, Code):
        return found
    user = _user(q)
    if user == found.owner:
        raise BadRequest(["a user cannot use its own referral code"])
    if found.max_uses is not None and len(found.used_by) >= found.max_uses:
        return _error(422, "Referral code has reached its max uses")
    if (user.identifier, user.identifier_type) in state.referrals:
        return _error(422, "User was already referred")
    state.use_code(found, user)
    return 200, {**_code_row(state, found.code), **_uid(user), "changed": True}


def _set_max_uses(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    found = _code(state, path)
    if not isinstance(found, Code):
        return found
    changed = found.max_uses != body["max_uses"]
    state.set_max_uses(found, body["max_uses"])
    return 200, {**_code_row(state, found.code), "changed": changed}


def _remove_referral(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    found = _code(state, path)
    if not isinstance(found, Code):
        return found
    user, referrer = _user(q), _user(q, "referrer")
    referral = state.referrals.get((user.identifier, user.identifier_type))
    mine = referral is not None and referral.code == found.code and referral.referrer == referrer
    changed = mine and state.remove_referrer(user)
    return 200, {"code": found.code, **_uid(user), "changed": changed}


# -- audiences ------------------------------------------------------------------------
def _add_entries(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    ident = path["segment_id"]
    added = sum(state.join_segment(ident, _user(entry)) for entry in body["entries"])
    return 200, {"segment_id": ident, "added": added, "changed": added > 0}


def _remove_entry(state: FuulState, q: Values, body: Values, path: Mapping[str, str]) -> Any:
    user = User(path["user_identifier"], q["user_identifier_type"])
    return 200, {"segment_id": path["segment_id"], **_uid(user),
                 "changed": state.leave_segment(path["segment_id"], user)}  # fmt: skip


_UID = {"user_identifier": Param(required=True), "user_identifier_type": Param("idtype", True)}
_REFERRER = {"referrer_identifier": Param(required=True),
             "referrer_identifier_type": Param("idtype", True)}  # fmt: skip
_MAX = 2**31 - 1
_SEGMENT = "audiences/audience-segments/{segment_id}/entries"

#: The table (see the module docstring).
WRITES: tuple[WriteRoute, ...] = (
    WriteRoute("PUT", "user-referrers", "users", {},
               {**_UID, **_REFERRER, "referral_code": Param()}, _set_referrer),
    WriteRoute("DELETE", "user-referrers", "users", _UID, None, _remove_referrer),
    WriteRoute("POST", "referral_codes", "referral_codes", {
        **_UID, "quantity": Param("int", high=50), "max_uses": Param("int", low=0, high=_MAX)},
        None, _generate),
    WriteRoute("PATCH", "referral_codes/{code}/use", "referral_codes", _UID, {
        "signature": Param(), "signature_message": Param(),
        "chain_id": Param("int", high=2**63 - 1)}, _use),
    WriteRoute("PATCH", "referral_codes/{code}", "referral_codes", {},
               {"max_uses": Param("int", True, low=0, high=_MAX, nullable=True)}, _set_max_uses),
    WriteRoute("DELETE", "referral_codes/{code}/referrals", "referral_codes",
               {**_UID, **_REFERRER}, None, _remove_referral),
    WriteRoute("POST", _SEGMENT + "/batch", "audiences", {},
               {"entries": Param("entries", True, high=100)}, _add_entries),
    WriteRoute("DELETE", _SEGMENT + "/{user_identifier}", "audiences",
               {"user_identifier_type": Param("idtype", True)}, None, _remove_entry),
)  # fmt: skip


def answer_write(
    route: WriteRoute,
    state: FuulState,
    query: Mapping[str, str],
    path: Mapping[str, str],
    body: bytes,
    scopes: frozenset[str] | None,
) -> tuple[int, bytes]:
    """``(status, body)`` of one write to ``route``, applied to ``state`` (a 400 is
    raised as BadRequest)."""
    refused = key_refusal(route.needs, scopes)
    if refused is not None:
        return refused
    values = judge_query(route.params, query)
    fields = judge_body(route.body, body) if route.body is not None else {}
    status, answer = route.answer(state, values, fields, path)
    return status, msgspec.json.encode(answer)
