"""`make simulate` on a small scale: days of operation after the demo's history, run as the
daemon would (purchases scored through the service's scorer, the schedules' ticks, every sensor
evaluated and its run requests executed), and the season's promises checked by the simulation
itself: every partition built exactly once with no gap, freshness green every day, the online
store serving the newest snapshot every day, no run failed. Drift and a worse release need a
longer season (`make simulate`, 60 days; its output is in README)."""

import subprocess
import sys

import pytest

from riskcore.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_short_season_keeps_its_promises(demo, demo_env):
    """After the demo fixture built the history (and its tests read it)."""
    season = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo.simulate",
            "--days",
            "1",
            "--drift-day",
            "99",
            "--worse-day",
            "99",
        ],
        cwd=PROJECT_ROOT,
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert season.returncode == 0, season.stdout[-3000:] + season.stderr[-3000:]
    days = [line for line in season.stdout.splitlines() if "scored" in line and "fresh yes" in line]
    assert len(days) == 1, season.stdout[-3000:]
    assert "every promise held" in season.stdout
