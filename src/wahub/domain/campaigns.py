"""Campaigns without I/O: the audience CSV, the split across templates, the state
machine and the funnel's rates.

A CSV audience is read the way an operator expects a spreadsheet import to behave:
every bad row is reported with its line number and reason, the good rows are kept, and
only a file with nothing usable is refused as a whole.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wahub.domain.errors import ConflictError, ValidationError
from wahub.domain.phones import normalize_phone

PHONE_COLUMN = "phone"
MAX_TEMPLATES = 10
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"  # created; dispatch begins at start_at or on start
    RUNNING = "running"  # the dispatcher queues recipients in chunks
    PAUSED = "paused"  # no new recipients are queued until resume
    CANCELLED = "cancelled"  # final: the recipients not queued yet never will be
    COMPLETED = "completed"  # final: every recipient was queued or skipped
    FAILED = "failed"  # final: cannot go on (its channel or template disappeared)


FINAL = frozenset({CampaignStatus.CANCELLED, CampaignStatus.COMPLETED, CampaignStatus.FAILED})

# action -> (states it may be taken from, the state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "start": (frozenset({CampaignStatus.SCHEDULED}), CampaignStatus.RUNNING),
    "pause": (frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "cancel": (
        frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
        CampaignStatus.CANCELLED,
    ),
}


def transition(current: str, action: str) -> CampaignStatus | None:
    """The state ``action`` leads to from ``current``; None when it is already there
    (starting a running campaign twice is a no-op, not an error). Raises ConflictError
    when the action is not allowed from ``current`` (e.g. starting a completed campaign).
    """
    allowed, target = TRANSITIONS[action]
    state = CampaignStatus(current)
    if state == target or (action == "start" and state == CampaignStatus.RUNNING):
        return None
    if state not in allowed:
        raise ConflictError(
            f"cannot {action} a campaign that is {state.value}",
            details={"status": state.value, "action": action},
        )
    return target


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """One template of a campaign: its body parameters are the named CSV columns, in
    order; ``weight`` is its share of the audience relative to the others."""

    name: str
    language: str
    weight: float = 1.0
    parameters: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "weight": self.weight,
            "parameters": list(self.parameters),
        }

    def content(self, variables: Mapping[str, str]) -> dict[str, Any]:
        """The Cloud API template object for one recipient."""
        template: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        if self.parameters:
            template["components"] = [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": variables[p]} for p in self.parameters],
                }
            ]
        return {"type": "template", "template": template}


def parse_templates(raw: Any) -> list[TemplateSpec]:
    """Validate a campaign's ``templates`` (a list of objects). Raises ValidationError."""
    if not isinstance(raw, list) or not raw:
        raise ValidationError(
            "templates: give at least one template", details={"field": "templates"}
        )
    if len(raw) > MAX_TEMPLATES:
        raise ValidationError(
            f"templates: at most {MAX_TEMPLATES} templates", details={"field": "templates"}
        )
    specs: list[TemplateSpec] = []
    for index, item in enumerate(raw):
        where = f"templates[{index}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where}: must be an object", details={"field": where})
        name, language = item.get("name"), item.get("language", "en")
        weight, parameters = item.get("weight", 1), item.get("parameters", [])
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,512}", name):
            raise ValidationError(
                f"{where}.name: lower-case letters, digits and _", details={"field": where}
            )
        if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", language):
            raise ValidationError(
                f"{where}.language: a code like en or en_US", details={"field": where}
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise ValidationError(f"{where}.weight: a positive number", details={"field": where})
        if not isinstance(parameters, list) or not all(
            isinstance(p, str) and _COLUMN.match(p) for p in parameters
        ):
            raise ValidationError(
                f"{where}.parameters: a list of CSV column names", details={"field": where}
            )
        if any(s.name == name for s in specs):
            # Counters are kept per template name: one name must mean one template.
            raise ValidationError(
                f"{where}.name: {name!r} is listed twice", details={"field": where}
            )
        specs.append(TemplateSpec(name, language, float(weight), tuple(parameters)))
    return specs


def assign_templates(specs: Sequence[TemplateSpec], count: int) -> list[int]:
    """Which template each of ``count`` recipients gets: the split follows the weights
    as closely as any prefix allows (smooth weighted round-robin), so a campaign paused
    halfway has sent each template in proportion too. Deterministic."""
    total = sum(s.weight for s in specs)
    credit = [0.0] * len(specs)
    chosen: list[int] = []
    for _ in range(count):
        for i, spec in enumerate(specs):
            credit[i] += spec.weight
        best = max(range(len(specs)), key=lambda i: credit[i])
        credit[best] -= total
        chosen.append(best)
    return chosen


@dataclass(frozen=True, slots=True)
class AudienceRow:
    line: int
    phone: str  # E.164
    variables: dict[str, str]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    code: str  # bad_header | bad_row | bad_phone | duplicate | missing_variables
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "code": self.code, "message": self.message}


@dataclass(slots=True)
class AudienceReport:
    rows: list[AudienceRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def refuse_if_empty(self) -> None:
        """Raise ValidationError (with every row's error) when no row is usable."""
        if not self.rows:
            raise ValidationError(
                "audience: no usable recipient"
                + (f" ({len(self.errors)} rows rejected)" if self.errors else ""),
                details={"field": "audience", "errors": [e.as_json() for e in self.errors[:1000]]},
            )


def parse_audience_csv(
    text: str, required: Iterable[str], *, default_region: str | None = None
) -> AudienceReport:
    """Read a CSV with a ``phone`` column and the template variables as other columns.

    Every bad row is reported (bad phone, duplicate phone, missing variables, wrong
    number of fields) and skipped; the good rows are kept. A header without ``phone`` or
    without a column a template needs makes every row unusable (one ``bad_header``).
    """
    report = AudienceReport()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header_line = None
    header: list[str] = []
    for header in reader:
        header_line = reader.line_num
        if any(cell.strip() for cell in header):
            break
    if header_line is None or not any(cell.strip() for cell in header):
        report.errors.append(RowError(1, "bad_header", "the file is empty"))
        return report
    columns = [cell.strip() for cell in header]
    lowered = [c.lower() for c in columns]
    needed = list(dict.fromkeys(required))
    problems = []
    if PHONE_COLUMN not in lowered:
        problems.append(f"no {PHONE_COLUMN!r} column")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        problems.append(f"columns named twice: {', '.join(duplicated)}")
    missing = [c for c in needed if c not in columns]
    if missing:
        problems.append(f"missing columns the templates need: {', '.join(missing)}")
    if problems:
        report.errors.append(RowError(header_line, "bad_header", "; ".join(problems)))
        return report
    phone_at = lowered.index(PHONE_COLUMN)
    seen: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            report.errors.append(
                RowError(line, "bad_row", f"{len(cells)} fields, the header has {len(columns)}")
            )
            continue
        raw_phone = cells[phone_at].strip()
        try:
            phone = normalize_phone(raw_phone, default_region=default_region, field="phone")
        except ValidationError as exc:
            # The rule's own words ("has no country code ... WAHUB_DEFAULT_REGION", "too
            # short for +49"), without the field prefix: the code already says "phone".
            report.errors.append(RowError(line, "bad_phone", exc.message.removeprefix("phone: ")))
            continue
        if phone in seen:
            report.errors.append(
                RowError(line, "duplicate", f"{phone} is already on line {seen[phone]}")
            )
            continue
        variables = {
            column: cell.strip()
            for i, (column, cell) in enumerate(zip(columns, cells, strict=True))
            if i != phone_at
        }
        empty = [c for c in needed if not variables.get(c)]
        if empty:
            report.errors.append(RowError(line, "missing_variables", f"empty: {', '.join(empty)}"))
            continue
        seen[phone] = line
        report.rows.append(AudienceRow(line, phone, variables))
    return report


FUNNEL = ("queued", "sent", "delivered", "read", "replied", "failed")
COUNTERS = ("total", "skipped_opted_out", "skipped_other", *FUNNEL)


def funnel(counts: Mapping[str, int]) -> dict[str, Any]:
    """A template's (or the totals') counters with ``skipped``, ``pending`` and rates.

    Rates are fractions of the stage before (sent/queued, delivered/sent,
    read/delivered), replied/sent and failed/queued; None when the base is zero.
    """
    c = {name: int(counts.get(name, 0)) for name in COUNTERS}
    skipped = c["skipped_opted_out"] + c["skipped_other"]

    def rate(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        **c,
        "skipped": skipped,
        # Queued and not yet sent or failed: in the outbox right now.
        "pending": c["queued"] - c["sent"] - c["failed"],
        "rates": {
            "sent": rate(c["sent"], c["queued"]),
            "delivered": rate(c["delivered"], c["sent"]),
            "read": rate(c["read"], c["delivered"]),
            "replied": rate(c["replied"], c["sent"]),
            "failed": rate(c["failed"], c["queued"]),
        },
    }


def stats_view(campaign_id: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The API's funnel: per template, and totals over the templates."""
    totals: dict[str, int] = {}
    templates = []
    for row in rows:
        templates.append({"template_name": row["template_name"], **funnel(row)})
        for name, value in row.items():
            if isinstance(value, int) and name not in ("campaign_id", "template_name"):
                totals[name] = totals.get(name, 0) + value
    return {"campaign_id": campaign_id, "templates": templates, "totals": funnel(totals)}
