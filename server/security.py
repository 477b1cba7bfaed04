"""Who may call the server, and what they may run.

:class:`Gate` puts :mod:`session_proxy_server.auth` and
:mod:`session_proxy_server.sql.policy` in front of every endpoint (health
answers without a token too, but then says only whether the server is up):

- :meth:`Gate.authenticate` turns the ``Authorization`` header into verified
  :class:`~session_proxy_server.auth.Claims`, or raises
  :class:`~session_proxy_server.auth.AuthError`
  (the app answers 401 with its reason).  Without a verifier (the CLI's
  ``--insecure-no-auth``) every caller is :data:`ANONYMOUS`.
- :meth:`Gate.check_statements` and :meth:`Gate.check_operation` apply the
  caller's role's policy, raising :class:`~session_proxy_server.sql.policy.PolicyViolation`
  (403 naming the statement's fingerprint).  With a recorder
  (``--policy-record FILE``) they also learn what each role runs; the policy
  file is rewritten whenever something new is learned, so it is complete
  at any moment.
- :meth:`Gate.check_metrics` lets only some roles read ``/v1/metrics``.

The gate decides before anything runs: a pipeline request with one refused
statement runs none of its steps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from session_proxy.wire import protocol

from .auth import (
    DEFAULT_AUDIENCE,
    DEFAULT_MAX_TOKEN_LIFETIME,
    ROLE_PATTERN,
    Claims,
    KeyFileError,
    TokenVerifier,
    load_public_key,
)
from .sql.policy import Policy, PolicyViolation
from .sql.recorder import PolicyRecorder
from .sql.tables import parse_budget

__all__ = ["ANONYMOUS", "Gate", "gate_from_options"]

log = logging.getLogger("session_proxy.server")

#: The caller of a server started with ``--insecure-no-auth``.
ANONYMOUS = Claims(
    subject="anonymous", role="anonymous", issued_at=0, expires_at=2**62, audience=""
)

#: The roles that may read ``/v1/metrics`` unless configured otherwise.
DEFAULT_METRICS_ROLES = frozenset({"admin"})


@dataclasses.dataclass
class Gate:
    """Authentication, policy and policy recording for one server.

    :param verifier: checks bearer tokens; ``None`` lets everyone in as
        :data:`ANONYMOUS` (for local experiments only).
    :param policy: the enforced policy; ``None`` allows every statement and
        operation to every authenticated caller.
    :param recorder: learns every statement and operation per role.
    :param record_path: where the recorder's policy is written.
    :param metrics_roles: roles that may read ``/v1/metrics``; a policy
        may name more (``"metrics": true``, or ``allow_all``).
    """

    verifier: TokenVerifier | None
    policy: Policy | None = None
    recorder: PolicyRecorder | None = None
    record_path: str | os.PathLike[str] | None = None
    metrics_roles: frozenset[str] = DEFAULT_METRICS_ROLES
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _seen: set[tuple[str, str, str]] = dataclasses.field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if (self.recorder is None) != (self.record_path is None):
            raise ValueError("a policy recorder needs a record_path, and only it")

    def authenticate(self, authorization: str | None) -> Claims:
        """The caller's verified claims; raises :class:`~session_proxy_server.auth.AuthError`."""
        if self.verifier is None:
            return ANONYMOUS
        return self.verifier.verify_header(authorization)

    def check_caller(self, claims: Claims, steps: list[dict[str, Any]]) -> None:
        """The policy checks that need no work on the SQL text (run before any).

        :raises PolicyViolation: the role is unknown, or may run nothing like
            the refused step's statement.
        """
        if self.policy is None:
            return
        for index, step in enumerate(steps):
            if step["op"] not in (protocol.EXECUTE, protocol.EXECUTE_MANY):
                continue
            try:
                self.policy.check_caller(claims.role, step["sql"])
            except PolicyViolation as exc:
                exc.step = index
                raise

    def check_statements(
        self, claims: Claims, steps: list[dict[str, Any]], dialect: str | None = None
    ) -> None:
        """Record and check every statement of a pipeline request, before any runs.

        :raises PolicyViolation: with ``step`` set to the refused step's index.
        """
        if self.policy is None and self.recorder is None:
            return
        with parse_budget():  # what one request may make the table extractor parse
            self._check_each(claims, steps, dialect)

    def _check_each(
        self, claims: Claims, steps: list[dict[str, Any]], dialect: str | None
    ) -> None:
        for index, step in enumerate(steps):
            if step["op"] not in (protocol.EXECUTE, protocol.EXECUTE_MANY):
                continue
            if self.recorder is not None:
                self._learn(claims.role, "statement", step["sql"], dialect)
            if self.policy is not None:
                try:
                    self.policy.check_statement(claims.role, step["sql"], dialect)
                except PolicyViolation as exc:
                    exc.step = index
                    raise

    @property
    def authenticates(self) -> bool:
        """Whether callers need a token (False under ``--insecure-no-auth``)."""
        return self.verifier is not None

    def check_metrics(self, claims: Claims) -> None:
        """Raise :class:`PolicyViolation` unless ``claims``' role may read the metrics.

        Allowed: every caller when authentication is off, the roles of
        :attr:`metrics_roles` (``--metrics-role``, default ``admin``), and
        the roles the policy gives ``"metrics": true`` or ``allow_all``.
        """
        if self.verifier is None or claims.role in self.metrics_roles:
            return
        if self.policy is not None and self.policy.allows_metrics(claims.role):
            return
        allowed = sorted(self.metrics_roles)
        raise PolicyViolation(
            f"role {claims.role!r} may not read the metrics; allowed: roles {allowed} "
            "(--metrics-role) and the policy's roles with \"metrics\": true",
            "",
            "metrics",
        )

    def check_operation(self, claims: Claims, name: str) -> None:
        """Record and check one logical operation call."""
        if self.recorder is not None:
            self._learn(claims.role, "operation", name)
        if self.policy is not None:
            self.policy.check_operation(claims.role, name)

    def _learn(self, role: str, kind: str, text: str, dialect: str | None = None) -> None:
        """Record one statement or operation; rewrite the policy file when it is new."""
        assert self.recorder is not None and self.record_path is not None
        if kind == "operation":
            self.recorder.record_operation(role, text)
            key = (role, kind, text)
        else:
            key = (role, kind, self.recorder.record(role, text, dialect))
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            # Written while holding the lock so files never interleave.
            self.recorder.save(self.record_path)


def gate_from_options(
    *,
    public_key: str | None,
    insecure_no_auth: bool = False,
    audience: str = DEFAULT_AUDIENCE,
    leeway_seconds: int = 30,
    policy: str | None = None,
    policy_record: str | None = None,
    max_token_lifetime: int = DEFAULT_MAX_TOKEN_LIFETIME,
    metrics_roles: Iterable[str] = DEFAULT_METRICS_ROLES,
) -> Gate:
    """Build the gate the CLI and the gunicorn entry point describe.

    ``max_token_lifetime`` (seconds) is the longest token lifetime accepted
    and ``metrics_roles`` the roles that may read the metrics.

    :raises ValueError: no public key without ``insecure_no_auth`` (or
        both), or both a policy and a policy recording; a key or policy
        file that cannot be loaded (the message names the file).
    """
    if insecure_no_auth and public_key:
        raise ValueError("give either a public key or --insecure-no-auth, not both")
    if not insecure_no_auth and not public_key:
        raise ValueError(
            "authentication is on by default: give the token issuer's public key "
            "(--public-key, made by 'session-proxy-server keys generate'), or "
            "--insecure-no-auth for a local experiment"
        )
    if policy and policy_record:
        raise ValueError("--policy and --policy-record exclude each other")
    for role in metrics_roles:
        if not ROLE_PATTERN.fullmatch(role):
            raise ValueError(
                f"--metrics-role {role!r} is not a role name: roles match {ROLE_PATTERN.pattern}"
            )
    try:
        verifier = None if public_key is None else TokenVerifier(
            load_public_key(public_key), audience, leeway_seconds, max_token_lifetime
        )
    except KeyFileError as exc:
        raise ValueError(str(exc)) from None
    if insecure_no_auth:
        log.warning(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this "
            "server can run SQL on the database"
        )
    return Gate(
        verifier=verifier,
        policy=Policy.load(policy) if policy else None,
        recorder=PolicyRecorder() if policy_record else None,
        record_path=policy_record,
        metrics_roles=frozenset(metrics_roles),
    )
