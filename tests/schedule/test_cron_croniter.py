"""croniter walks the cron; we hand it a normalised expression that carries our semantics."""

from __future__ import annotations

from datetime import datetime

import pytest
from croniter import croniter

from treasury.language.cron import parse_cron


@pytest.mark.parametrize(
    ("expr", "given_to_croniter"),
    [
        ("0 9 * * MON-FRI", "0 9 * * 1,2,3,4,5"),
        ("0 0 * * FRI-SUN", "0 0 * * 0,5,6"),  # names and a range that runs to Sunday, expanded by us
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 1 JAN,jul *", "0 0 1 1,7 *"),
        ("5/15 8-18/2 1,15 * *", "5,20,35,50 8,10,12,14,16,18 1,15 * *"),
        ("@daily", "0 0 * * *"),
        # a day field listing every day does not restrict; croniter would OR "0-6" with the 13th
        ("0 0 13 * 0-6", "0 0 13 * *"),
        ("*/1 * 1-31 * *", "* * * * *"),
    ],
)
def test_the_expression_croniter_walks(expr: str, given_to_croniter: str) -> None:
    assert parse_cron(expr).expr == given_to_croniter


def test_croniter_would_differ_on_a_listed_out_week() -> None:
    # why we normalise: croniter reads "0-6" as a restriction and ORs it with the 13th
    assert croniter("0 0 13 * 0-6", datetime(2026, 1, 1)).get_next(datetime) == datetime(2026, 1, 2)
    assert parse_cron("0 0 13 * 0-6").next_after(datetime(2026, 1, 1)) == datetime(2026, 1, 13)


def test_one_cron_is_safe_to_share_between_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    cron = parse_cron("*/7 3-20/3 * * 1-5")
    starts = [datetime(2026, 1, 1 + i % 28, i % 24, i % 60) for i in range(400)]
    expected = [croniter(cron.expr, t).get_next(datetime) for t in starts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(cron.next_after, starts)) == expected
