"""The report parameters a caller chooses beyond dates."""

from enum import StrEnum


class Against(StrEnum):
    PREVIOUS_PERIOD = "previous_period"
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
