"""Concurrency pinned at the maximum: samples from the platform's headers, N consecutive samples at the maximum
raise one alert per run, a sample below the maximum or a gap in sampling ends the run."""

from datetime import timedelta

import pytest

from detection import concurrency
from detection.models import ConcurrencySample
from project.alerts.models import Alert
from tests.factories import NOW, make_api_key_row, make_detection_policy

pytestmark = pytest.mark.django_db
MINUTE = timedelta(seconds=60)


def _samples(*pairs, end=NOW):
    """Samples a minute apart ending at `end`, oldest first."""
    for n, (current, maximum) in enumerate(pairs):
        concurrency.concurrency_sample_record(current=current, maximum=maximum,
                                              now=end - (len(pairs) - 1 - n) * MINUTE)


def test_five_samples_at_the_maximum_raise_an_alert(workspace, fixed_now):
    make_api_key_row(workspace)
    _samples((3, 10), (10, 10), (10, 10), (10, 10), (10, 10), (11, 10))
    assert concurrency.concurrency_evaluate() == 1
    (alert,) = Alert.objects.filter(kind="concurrency_pinned")
    assert alert.severity == "high" and alert.details["samples_at_maximum"] == 5
    assert alert.details["threshold_samples"] == 5 and len(alert.details["samples"]) == 5


def test_four_samples_at_the_maximum_stay_quiet(workspace, fixed_now):
    make_api_key_row(workspace)
    _samples((10, 10), (9, 10), (10, 10), (10, 10), (10, 10), (10, 10))
    assert concurrency.concurrency_evaluate() == 0


def test_a_run_raises_one_alert_and_a_new_run_another(workspace, fixed_now, monkeypatch):
    from django.utils import timezone

    make_api_key_row(workspace)
    _samples(*[(10, 10)] * 5)
    assert concurrency.concurrency_evaluate() == 1
    later = NOW + MINUTE
    monkeypatch.setattr(timezone, "now", lambda: later)
    _samples((10, 10), end=later)
    assert concurrency.concurrency_evaluate() == 0  # the same run, one sample longer
    _samples(*[(2, 10)] + [(10, 10)] * 5, end=later + 6 * MINUTE)
    monkeypatch.setattr(timezone, "now", lambda: later + 6 * MINUTE)
    assert concurrency.concurrency_evaluate() == 1
    assert Alert.objects.filter(kind="concurrency_pinned").count() == 2


def test_a_gap_in_sampling_breaks_the_run(workspace, fixed_now):
    make_api_key_row(workspace)
    _samples(*[(10, 10)] * 3, end=NOW - 10 * MINUTE)  # before the sampler stopped for ten minutes
    _samples(*[(10, 10)] * 3)
    assert concurrency.concurrency_evaluate() == 0


def test_each_workspace_uses_its_own_sample_count(workspace, other_workspace, fixed_now):
    make_detection_policy(workspace, concurrency_samples=3)
    make_api_key_row(workspace), make_api_key_row(other_workspace)
    _samples(*[(10, 10)] * 4)
    concurrency.concurrency_evaluate()
    assert list(Alert.objects.values_list("workspace_id", flat=True)) == [workspace.pk]


def test_workspaces_without_usable_keys_get_no_alert(workspace, fixed_now):
    _samples(*[(10, 10)] * 6)
    assert concurrency.concurrency_evaluate() == 0


def test_watch_samples_the_platform_headers(workspace, platform, emulator, fixed_now):
    make_api_key_row(workspace)
    emulator.set_concurrency(current=10, maximum=10)
    for n in range(5):
        result = concurrency.concurrency_watch(now=NOW - (4 - n) * MINUTE)
    assert result["sampled"] == 1 and result["alerts"] == 1
    assert list(ConcurrencySample.objects.order_by().values_list("current", "maximum").distinct()) == [(10, 10)]


def test_watch_without_headers_takes_no_sample(workspace, platform, fixed_now, monkeypatch):
    monkeypatch.setattr(type(platform), "usage_by_api_key", lambda self, **kw: {"columns": [], "rows": []})
    assert concurrency.concurrency_watch()["sampled"] == 0
    assert not ConcurrencySample.objects.exists()


def test_old_samples_are_pruned(fixed_now):
    _samples((1, 10), end=NOW - timedelta(hours=25))
    _samples((1, 10))
    assert concurrency.concurrency_prune() == 1
    assert ConcurrencySample.objects.count() == 1
