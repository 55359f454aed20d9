"""`--schedule` parsing (pipeline/config/schedule.py) without the CLI: each accepted form, each refusal as its whole
line, names and ranges at their edges. Written against the mutants bench/mutation.py found alive."""
from __future__ import annotations

import pytest

from pipeline.config.errors import ConfigError
from pipeline.config import schedule


@pytest.mark.parametrize("text", [
    "0 0 1 1 0", "59 23 31 12 6", "* * * * *", "*/1 */5 */31 */12 */7", "0-59 0-23 1-31 1-12 0-6",
    "0-59/30 5-5 1,31 jan,DEC sun-sat", "0 3 * Feb-Mar Mon", "1,2,3 4-6/2 7 8 sat",
])
def test_accepted_crons_keep_their_fields(text):
    cron = schedule.parse(text)
    assert cron.fields == tuple(text.split()) and cron.time_zone == ""
    assert cron.expression == text
    assert cron.for_vertex() == text
    assert cron.for_kubeflow() == "0 " + text


def test_a_prefix_is_taken_off_and_kept_as_the_zone():
    cron = schedule.parse("CRON_TZ=America/New_York   15 4 * * *")
    assert cron.fields == ("15", "4", "*", "*", "*")
    assert cron.time_zone == "America/New_York"
    assert cron.for_vertex() == "TZ=America/New_York 15 4 * * *"
    with pytest.raises(ConfigError) as raised:
        cron.for_kubeflow()
    assert str(raised.value) == ("--schedule: Kubeflow Pipelines runs recurring runs in UTC and has no time zone "
                                 "setting; drop the TZ=America/New_York prefix and give the time in UTC")


@pytest.mark.parametrize("text, line", [
    ("0 3 * *", "--schedule '0 3 * *': expected 5 cron fields (minute hour day-of-month month day-of-week), e.g. "
                "'0 3 * * *' (every day at 03:00), optionally after TZ=<IANA zone>; got 4"),
    ("", "--schedule '': expected 5 cron fields (minute hour day-of-month month day-of-week), e.g. "
         "'0 3 * * *' (every day at 03:00), optionally after TZ=<IANA zone>; got 0"),
    ("TZ=Nowhere/Land 0 3 * * *", "--schedule 'TZ=Nowhere/Land 0 3 * * *': unknown time zone 'Nowhere/Land' "
                                  "(expected an IANA name such as Europe/Berlin)"),
    ("TZ=../etc 0 3 * * *", "--schedule 'TZ=../etc 0 3 * * *': unknown time zone '../etc' "
                            "(expected an IANA name such as Europe/Berlin)"),
    ("-1 3 * * *", "--schedule '-1 3 * * *': minute: '-1' is not *, */step, a value, a-b or a-b/step"),
    ("5/2 3 * * *", "--schedule '5/2 3 * * *': minute: '5/2' is not *, */step, a value, a-b or a-b/step"),
    ("0 3 * * 1,", "--schedule '0 3 * * 1,': day-of-week: '' is not *, */step, a value, a-b or a-b/step"),
    ("*/0 3 * * *", "--schedule '*/0 3 * * *': minute: step 0 must be at least 1"),
    ("0 1-2/0 * * *", "--schedule '0 1-2/0 * * *': hour: step 0 must be at least 1"),
    ("x 3 * * *", "--schedule 'x 3 * * *': minute: 'x' is not a number 0-59"),
    ("0 3 * foo *", "--schedule '0 3 * foo *': month: 'foo' is not a number 1-12 or a name (JAN..)"),
    ("0 3 * * funday", "--schedule '0 3 * * funday': day-of-week: 'funday' is not a number 0-6 or a name (SUN..)"),
    ("0 3 jan * *", "--schedule '0 3 jan * *': day-of-month: 'jan' is not a number 1-31"),
    ("60 3 * * *", "--schedule '60 3 * * *': minute: 60 is not in 0-59"),
    ("0 24 * * *", "--schedule '0 24 * * *': hour: 24 is not in 0-23"),
    ("0 3 0 * *", "--schedule '0 3 0 * *': day-of-month: 0 is not in 1-31"),
    ("0 3 32 * *", "--schedule '0 3 32 * *': day-of-month: 32 is not in 1-31"),
    ("0 3 * 0 *", "--schedule '0 3 * 0 *': month: 0 is not in 1-12"),
    ("0 3 * 13 *", "--schedule '0 3 * 13 *': month: 13 is not in 1-12"),
    ("0 3 * * 7", "--schedule '0 3 * * 7': day-of-week: 7 is not in 0-6 (Sunday is 0)"),
    ("0 3 * * 1-9", "--schedule '0 3 * * 1-9': day-of-week: 9 is not in 0-6 (Sunday is 0)"),
    ("0 3 20-10 * *", "--schedule '0 3 20-10 * *': day-of-month: range '20-10' ends before it starts"),
    ("0 3 * dec-jan *", "--schedule '0 3 * dec-jan *': month: range 'dec-jan' ends before it starts"),
])
def test_a_refused_cron_is_this_one_line(text, line):
    with pytest.raises(ConfigError) as raised:
        schedule.parse(text)
    assert str(raised.value) == line


def test_a_range_of_one_value_and_a_month_name_at_each_end_are_accepted():
    assert schedule.parse("0 3 5-5 JAN-DEC *").fields[2:4] == ("5-5", "JAN-DEC")
    assert schedule.parse("0 3 * * SUN-SAT").fields[4] == "SUN-SAT"
    assert schedule.parse("0 3 * * sun,0").fields[4] == "sun,0"


def test_every_item_after_a_star_in_a_list_is_still_checked():
    with pytest.raises(ConfigError) as raised:
        schedule.parse("*,60 3 * * *")
    assert str(raised.value) == "--schedule '*,60 3 * * *': minute: 60 is not in 0-59"
    assert schedule.parse("*/5,7 3 * * *").fields[0] == "*/5,7"
