"""The report parameters a caller chooses beyond dates."""

from enum import StrEnum


class Against(StrEnum):
    """The period a range is compared with (worked out in calendar.base_range)."""

    PREVIOUS_PERIOD = "previous_period"
    PREVIOUS_MONTH = "previous_month"
    PREVIOUS_QUARTER = "previous_quarter"
    PREVIOUS_YEAR = "previous_year"
    CUSTOM = "custom"


class Dimension(StrEnum):
    PRODUCT = "product"
    CATEGORY = "category"
    CHANNEL = "channel"


class CategoryRollup(StrEnum):
    NONE = "none"
    TOP_LEVEL = "top_level"


class SortKey(StrEnum):
    REVENUE = "-revenue"
    REVENUE_ASC = "revenue"
    UNITS = "-units"
    UNITS_ASC = "units"
    MARGIN = "-margin"
    MARGIN_ASC = "margin"
