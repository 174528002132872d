"""Schedules: DST-correct due instants (``timing``), the tick that starts exactly one run per
(schedule, due time) (``tick``), its stored state (``state``, ``tables``) and pausing (``admin``).
"""
