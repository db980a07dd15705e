"""Keyward's date and number formats (FORMAT_MODULE_PATH): unambiguous 24-hour dates with no abbreviation
periods ("Dec. 6, 2026, 3 p.m." ran into the end of a sentence as "p.m.."), and thousands separators for
numbers the admin formats itself (`floatformat:"g"`, intcomma-style display)."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
THOUSAND_SEPARATOR = ","
DECIMAL_SEPARATOR = "."
NUMBER_GROUPING = 3
