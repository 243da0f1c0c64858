"""The data that crosses module boundaries: declarations, findings, results, reports.

Everything here is a frozen dataclass or an enum so that checks, the runner,
the predictor and the renderers agree on one vocabulary and nobody passes
dicts around.  The JSON form of a Report is a public interface
(docs/report.schema.json); change it only together with the schema version.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deliverck.message.model import MessageInfo

REPORT_SCHEMA = "deliverck.report/1"


class Severity(enum.IntEnum):
    INFO = 0
    NOTICE = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4

    @classmethod
    def from_text(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.to_text() for s in cls)
            raise ValueError(f"unknown severity {text!r} (use one of: {names})") from None

    def to_text(self) -> str:
        return self.name.lower()


class Status(str, enum.Enum):
    """Outcome of one check.  ERROR means the check could not complete."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCOMPLETE = "incomplete"


class Direction(str, enum.Enum):
    """Which mail a finding endangers."""

    INBOUND = "inbound"      # mail *to* the audited domain/host
    OUTBOUND = "outbound"    # mail *from* the audited server
    INTERNAL = "internal"    # mail between the organisation's own servers
    NONE = "none"            # informational, affects no delivery


class Owner(str, enum.Enum):
    """Who must act to fix a cause."""

    MAIL_ADMIN = "mail_admin"    # administrator of the audited mail server
    DNS_ADMIN = "dns_admin"      # whoever edits the domain's zone
    IP_OWNER = "ip_owner"        # holder of the address block (ISP, hosting provider): reverse DNS
    NETWORK = "network"          # firewall / network team, or the checking network
    RECEIVER = "receiver"        # the administrator of the receiving system
    NOBODY = "nobody"            # informational


class Likelihood(str, enum.Enum):
    """How sure a predicted NDR is.

    WILL: the receiver's documented rule always fires on this evidence.
    MAY: it also depends on something deliverck cannot see (volume,
    reputation, content, the receiver's own configuration); the prediction
    says what in `condition`.
    """

    WILL = "will"
    MAY = "may"


class Skip(Exception):
    """Raised by a check that does not apply to this target; str() is the reason."""


EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


@dataclass(frozen=True)
class FindingSpec:
    """A finding a check declares it can emit.

    `summary` is a str.format template over the finding's named arguments.
    `inconclusive` marks findings that mean "the check could not find out"
    (a lookup timed out, a server failed); they make the check's status
    `error` and never count towards a pass or a fail.
    """

    id: str
    severity: Severity
    summary: str
    fix: str
    owner: Owner
    direction: Direction
    ndr: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    inconclusive: bool = False

    @property
    def check_id(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    subject: str
    summary: str
    fix: str
    owner: Owner
    direction: Direction
    evidence: tuple[str, ...] = ()
    ndr: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    inconclusive: bool = False
    args: Mapping[str, Any] = field(default_factory=dict)


class _Args(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class CheckSpec:
    """What a check is, and every finding it can emit."""

    id: str
    title: str
    cause: str
    findings: tuple[FindingSpec, ...]
    order: int = 100
    # Runner-level findings every check can produce are added by the registry.

    def spec(self, finding_id: str) -> FindingSpec:
        fid = finding_id if "." in finding_id else f"{self.id}.{finding_id}"
        for f in self.findings:
            if f.id == fid:
                return f
        raise KeyError(f"check {self.id!r} emitted undeclared finding {fid!r}")

    def finding(
        self,
        finding_id: str,
        subject: str,
        evidence: tuple[str, ...] | list[str] = (),
        /,
        **args: Any,
    ) -> Finding:
        """Build a declared finding; an undeclared id raises (and so fails tests).

        ``severity=`` (a Severity, or None for the declared default) travels in ``args``
        rather than as a parameter of its own: checks pass their template arguments as
        ``**dict``, and a typed keyword would make every such call a type error.
        """
        severity: Severity | None = args.pop("severity", None)
        s = self.spec(finding_id)
        fmt_args = _Args(subject=subject, **args)
        return Finding(
            id=s.id,
            severity=s.severity if severity is None else severity,
            subject=subject,
            summary=s.summary.format_map(fmt_args),
            fix=s.fix.format_map(fmt_args),
            owner=s.owner,
            direction=s.direction,
            evidence=tuple(evidence),
            ndr=s.ndr,
            refs=s.refs,
            inconclusive=s.inconclusive,
            args=dict(args),
        )


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    status: Status
    duration_ms: int
    findings: tuple[Finding, ...] = ()
    reason: str = ""            # why skipped / why it could not complete
    traceback: str = ""         # only rendered under --debug


@dataclass(frozen=True)
class NdrPrediction:
    key: str                    # catalog key
    system: str                 # receiver system id, e.g. "exchange-online"
    system_name: str            # human name, e.g. "Exchange Online"
    code: int                   # SMTP reply code
    status: str                 # enhanced status code, e.g. "5.7.25"
    reply: str                  # the reply line a user would see, placeholders filled in
    text: str                   # the meaning in one line
    direction: Direction
    owner: Owner
    fix: str
    caused_by: tuple[str, ...]  # finding ids
    subjects: tuple[str, ...]   # subjects of those findings
    source: str
    likelihood: Likelihood = Likelihood.MAY
    condition: str = ""         # for MAY: what it depends on, in words

    @property
    def permanent(self) -> bool:
        """A 5xx reply, or (no reply code in the NDR) a 5.x.x status: the message comes back."""
        if self.code:
            return 500 <= self.code <= 599
        return self.status.startswith("5.")


@dataclass(frozen=True)
class TargetInfo:
    input: str
    name: str                   # A-label form, no trailing dot; "" for an IP literal
    ip: str                     # the IP literal, or ""
    roles: tuple[str, ...] = ()  # "domain", "host", "address"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One network step of an audit, for the report's timing waterfall (deliverck/timing.py).

    Times are milliseconds since the audit started, so steps of one report share an axis.
    `check` is the check whose question started the step: a fact several checks read is
    computed once, for whoever asked first ("" when the run itself asked, e.g. the resolver's
    sanity questions).  `critical` marks the steps on the chain that decided when the audit ended.
    """

    kind: str                   # "dns" | "smtp" | "tls" | "http" | "kerberos"
    label: str                  # e.g. "MX example.com", "connect 192.0.2.1:25", "GET https://..."
    check: str
    start_ms: float
    end_ms: float
    critical: bool = False


@dataclass(frozen=True)
class Report:
    target: TargetInfo
    started: str                # RFC 3339 UTC
    finished: str
    duration_ms: int
    verdict: Verdict
    exit_code: int
    fail_on: Severity
    checks: tuple[CheckResult, ...]
    predicted_ndrs: tuple[NdrPrediction, ...]
    resolvers: tuple[str, ...]
    receivers: tuple[str, ...]
    tool_version: str
    schema: str = REPORT_SCHEMA
    zone_files: tuple[tuple[str, str], ...] = ()   # --zone-file: (path, origin) answered from files
    baseline: BaselineDiff | None = None          # --baseline: what is new, fixed, unchanged
    message: MessageInfo | None = None            # `deliverck message` / `listen`: the message judged
    timings: tuple[Step, ...] = ()                # network steps in start order (at most timing.MAX_STEPS)
    timings_dropped: int = 0                      # steps past that bound, counted but not kept


@dataclass(frozen=True)
class BaselineDiff:
    """A report compared with an earlier one.  Findings are the same when their
    (id, subject) pairs are equal; severity and wording changes do not matter."""

    path: str
    new: tuple[Finding, ...]                     # in this report, not in the baseline
    fixed: tuple[tuple[str, str, str], ...]      # (id, subject, severity) in the baseline only
    unchanged: tuple[Finding, ...]               # in both

    def is_new(self, f: Finding) -> bool:
        return any(f is n for n in self.new)
