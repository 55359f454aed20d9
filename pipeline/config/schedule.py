"""The cron schedule of `tokenlearner submit --schedule`: the one format the flag takes, checked here before anything
is compiled or sent, and the form each backend receives.

The flag takes standard 5-field unix cron, `minute hour day-of-month month day-of-week` (`0 3 * * *`: every day at
03:00), optionally after a time zone prefix `TZ=<IANA zone> ` or `CRON_TZ=<IANA zone> `:

- Vertex AI pipeline schedules take exactly that (aiplatform `PipelineJob.create_schedule(cron=...)`: unix cron, the
  prefix sets the zone; without one the service's default zone applies, which the SDK does not state: give `TZ=` to
  be explicit). `CRON_TZ=` is sent as the equivalent `TZ=`.
- Kubeflow Pipelines recurring runs parse `cron_expression` with github.com/robfig/cron's v1 `cron.Parse`
  (kubeflow/pipelines backend/src/crd/controller/scheduledworkflow/util/cron_schedule.go), whose fields are
  `second minute hour day-of-month month [day-of-week]`: a unix line sent as it is would be read one field off
  (`0 3 * * *` = minute 3 of every hour). It gets a leading `0` seconds field (`0 0 3 * * *`, kfp 2.5.0's
  `create_recurring_run` docstring asks for 6 fields). The controller computes the times in UTC and has no time zone
  field, so a TZ prefix is refused for Kubeflow rather than silently ignored.

Accepted in each field: `*`, `*/step`, a value, `a-b`, `a-b/step`, and comma lists of those; month and day-of-week
also as names (`JAN`, `MON`). Day-of-week is 0-6 with Sunday 0 (robfig's range; 7 is refused). Both backends accept
this subset; descriptors (`@daily`) and the `?` of Quartz-style crons are refused.
"""
from __future__ import annotations

import dataclasses
import re
import zoneinfo

from pipeline.config.errors import ConfigError

FLAG = "--schedule"
EXAMPLE = "'0 3 * * *' (every day at 03:00)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names (index + lowest = value)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()), ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS))
_ITEM = re.compile(r"^(?:(?P<star>\*)|(?P<low>[0-9A-Za-z]+)(?:-(?P<high>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9]+))?$")
_PREFIX = re.compile(r"^(?:CRON_)?TZ=(?P<zone>\S+)\s+")


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A checked `--schedule`: its five unix cron fields and the time zone of its prefix ("" = none given)."""

    fields: tuple[str, ...]  # minute, hour, day-of-month, month, day-of-week
    time_zone: str = ""

    @property
    def expression(self) -> str:
        return " ".join(self.fields)

    def for_vertex(self) -> str:
        """`PipelineJob.create_schedule(cron=...)`: unix cron, the zone as a `TZ=` prefix."""
        return f"TZ={self.time_zone} {self.expression}" if self.time_zone else self.expression

    def for_kubeflow(self) -> str:
        """`kfp.Client.create_recurring_run(cron_expression=...)`: robfig/cron's 6 fields, seconds first."""
        if self.time_zone:
            raise ConfigError(f"{FLAG}: Kubeflow Pipelines runs recurring runs in UTC and has no time zone setting; "
                              f"drop the TZ={self.time_zone} prefix and give the time in UTC")
        return f"0 {self.expression}"


def parse(text: str) -> CronSchedule:
    """`text` as a CronSchedule, or a one-line ConfigError naming the field and what it expected."""
    line = text.strip()
    zone = ""
    prefix = _PREFIX.match(line)
    if prefix:
        zone = prefix["zone"]
        try:
            zoneinfo.ZoneInfo(zone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ConfigError(f"{FLAG} {text!r}: unknown time zone {zone!r} (expected an IANA name such as "
                              "Europe/Berlin)") from None
        line = line[prefix.end():]
    fields = tuple(line.split())
    if len(fields) != len(_FIELDS):
        raise ConfigError(f"{FLAG} {text!r}: expected 5 cron fields (minute hour day-of-month month day-of-week), "
                          f"e.g. {EXAMPLE}, optionally after TZ=<IANA zone>; got {len(fields)}")
    for value, spec in zip(fields, _FIELDS):
        _check_field(text, value, *spec)
    return CronSchedule(fields, zone)


def _check_field(text: str, value: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> None:
    def number(token: str) -> int:
        if token.isdigit():
            n = int(token)
        elif token.lower() in names:
            n = names.index(token.lower()) + lowest
        else:
            expected = f"a number {lowest}-{highest}" + (f" or a name ({names[0].upper()}..)" if names else "")
            raise ConfigError(f"{FLAG} {text!r}: {name}: {token!r} is not {expected}")
        if not lowest <= n <= highest:
            extra = " (Sunday is 0)" if name == "day-of-week" else ""
            raise ConfigError(f"{FLAG} {text!r}: {name}: {n} is not in {lowest}-{highest}{extra}")
        return n

    for item in value.split(","):
        match = _ITEM.match(item)
        if not match or (match["step"] is not None and not match["star"] and match["high"] is None):
            raise ConfigError(f"{FLAG} {text!r}: {name}: {item!r} is not *, */step, a value, a-b or a-b/step")
        if match["step"] is not None and int(match["step"]) < 1:
            raise ConfigError(f"{FLAG} {text!r}: {name}: step {match['step']} must be at least 1")
        if match["star"]:
            continue
        low = number(match["low"])
        if match["high"] is not None and number(match["high"]) < low:
            raise ConfigError(f"{FLAG} {text!r}: {name}: range {item!r} ends before it starts")
