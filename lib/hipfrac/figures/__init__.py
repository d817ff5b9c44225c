"""Plotting: functions that take tidy (already disclosure-checked) frames and return matplotlib Figures."""
