"""Figures: functions take DataFrames and return matplotlib figures; :mod:`.common` saves them."""
