"""The metrics collector, driven by hand-fed time (no sleeping); percentiles checked against sorted data."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable

import pytest

from coordinator.metrics import (
    COUNTERS,
    EVENTS_RECEIVED,
    FAILURES,
    FILE_SIZE_BYTES,
    FILES_PROCESSED,
    HISTOGRAMS,
    PERCENTILES,
    PROCESSING_S,
    QUEUE_WAIT_S,
    RESTARTS,
    SUCCESSES,
    Histogram,
    MetricsCollector,
    MetricsConfig,
)

pytestmark = pytest.mark.timeout(60)

ALPHA = 0.01  # the stated accuracy: 1% relative error
QS = list(PERCENTILES.values())


def exact(values: list[float], q: float) -> float:
    """The order statistic the histogram promises to be within ALPHA of: the lower one at q * (n - 1)."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def within(got: float | None, want: float, alpha: float = ALPHA) -> bool:
    # A hair of slack for the float rounding of log() at a bucket's edge, where the error is exactly alpha.
    assert got is not None
    return abs(got - want) <= alpha * abs(want) * (1 + 1e-9)


def filled(values: list[float], **kw: float) -> Histogram:
    h = Histogram(**kw)  # type: ignore[arg-type]
    for v in values:
        h.observe(v)
    return h


def sample(draw: Callable[[random.Random], float], n: int = 20_000, seed: int = 8) -> list[float]:
    rng = random.Random(seed)
    return [draw(rng) for _ in range(n)]


DISTRIBUTIONS: dict[str, list[float]] = {
    "uniform": sample(lambda r: r.uniform(0.001, 10.0)),
    "lognormal": sample(lambda r: r.lognormvariate(-1.0, 1.5)),
    "lognormal wide": sample(lambda r: r.lognormvariate(0.0, 3.0)),
    "exponential": sample(lambda r: r.expovariate(2.0)),
    "pareto": sample(lambda r: r.paretovariate(1.1)),
    "bimodal": sample(lambda r: r.gauss(0.05, 0.005) if r.random() < 0.8 else r.gauss(5.0, 0.5)),
    "constant": [0.25] * 1000,
    "sizes with empty files": sample(lambda r: 0.0 if r.random() < 0.05 else round(r.lognormvariate(9, 2))),
    "gap 99/1": [0.01] * 9900 + [30.0] * 100,
    "n=1": [3.7],
    "n=2": [1.0, 100.0],
    "n=3": [1.0, 2.0, 1000.0],
    "n=3 with a zero": [0.0, 5.0, 7.0],
}


# -- histogram accuracy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_percentiles_are_within_one_percent_of_the_exact_order_statistic(name: str) -> None:
    values = DISTRIBUTIONS[name]
    h = filled(values)
    for q in [*QS, 0.0, 0.25, 0.75, 0.999, 1.0]:
        got, want = h.quantile(q), exact(values, q)
        assert within(got, want), f"{name}: q={q} got {got}, exact {want}"


@pytest.mark.parametrize("name", [n for n in DISTRIBUTIONS if len(DISTRIBUTIONS[n]) >= 2])
def test_percentiles_bracket_statistics_quantiles(name: str) -> None:
    """statistics.quantiles interpolates between the two order statistics around q * (n - 1); the
    histogram answers within 1% of the lower one, so within 1% of the interval the reference lies in."""
    values = DISTRIBUTIONS[name]
    ordered = sorted(values)
    reference = statistics.quantiles(values, n=100, method="inclusive")
    h = filled(values)
    for key, q in PERCENTILES.items():
        ref = reference[round(q * 100) - 1]
        low = ordered[math.floor(q * (len(values) - 1))]
        high = ordered[math.ceil(q * (len(values) - 1))]
        assert low <= ref <= high
        got = h.quantile(q)
        assert got is not None
        assert low * (1 - ALPHA) - 1e-12 <= got <= high * (1 + ALPHA) + 1e-12, f"{name} {key}"
        if high <= low * (1 + ALPHA):  # smooth data: the two order statistics are close together
            assert abs(got - ref) <= 2.01 * ALPHA * ref, f"{name} {key}: {got} vs {ref}"


def test_constant_data_and_tiny_n_come_back_exact_thanks_to_min_and_max() -> None:
    assert filled([0.25] * 1000).quantiles(QS) == [0.25] * 4
    assert filled([3.7]).quantiles(QS) == [3.7] * 4
    assert filled([1.0, 100.0]).quantiles([0.0, 0.5, 0.99, 1.0]) == [1.0, 1.0, 1.0, 100.0]
    assert filled([0.0]).quantile(0.5) == 0.0


def test_count_sum_min_max_and_mean_are_exact() -> None:
    values = DISTRIBUTIONS["lognormal"]
    s = filled(values).summary()
    assert s["count"] == len(values)
    assert s["sum"] == pytest.approx(math.fsum(values), rel=1e-12)
    assert (s["min"], s["max"]) == (min(values), max(values))
    assert s["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert set(s) == {"count", "sum", "min", "max", "mean", *PERCENTILES}


def test_an_empty_histogram_has_none_for_every_statistic() -> None:
    s = Histogram().summary()
    assert s == {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None,
                 "p50": None, "p90": None, "p95": None, "p99": None}  # fmt: skip
    json.dumps(s, allow_nan=False)


def test_nan_infinity_and_quantiles_outside_zero_to_one_are_refused() -> None:
    h = Histogram()
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            h.observe(bad)
    assert h.count == 0
    with pytest.raises(ValueError):
        h.quantile(1.5)
    with pytest.raises(ValueError):
        Histogram(relative_error=0.0)
    with pytest.raises(ValueError):
        Histogram(max_buckets=0)


def test_a_tighter_relative_error_is_honoured() -> None:
    values = DISTRIBUTIONS["lognormal"]
    h = filled(values, relative_error=0.001)
    for q in QS:
        assert within(h.quantile(q), exact(values, q), alpha=0.001)


# -- histogram memory ------------------------------------------------------------------------------------


def test_a_million_observations_keep_a_few_hundred_buckets() -> None:
    rng = random.Random(3)
    h = Histogram()
    for _ in range(1_000_000):
        h.observe(rng.lognormvariate(-1.0, 1.5))
    assert h.count == 1_000_000
    # 640 or so for this spread; what matters is that it does not grow with the count.
    assert h.buckets < 800
    assert len(h._counts) == h.buckets


def test_past_max_buckets_the_lowest_merge_and_the_high_percentiles_keep_their_accuracy() -> None:
    # Twelve orders of magnitude, ~1,400 buckets at 1%, squeezed into 300: the top 2.6 orders keep theirs.
    rng = random.Random(5)
    values = [10 ** rng.uniform(-6, 6) for _ in range(50_000)]
    h = filled(values, max_buckets=300)
    assert len(h._counts) == 300
    assert h.count == len(values)
    for q in (0.9, 0.95, 0.99, 0.999, 1.0):
        assert within(h.quantile(q), exact(values, q)), q
    # The median fell in the merged buckets: no longer within 1% (it reads high), but still in range.
    median = h.quantile(0.5)
    assert median is not None and exact(values, 0.5) < median < exact(values, 0.9)


# -- histogram periods -----------------------------------------------------------------------------------


def test_since_a_mark_gives_the_histogram_of_what_came_after() -> None:
    early = DISTRIBUTIONS["uniform"][:5000]
    late = DISTRIBUTIONS["lognormal"][:7000]
    h = filled(early)
    mark = h.mark()
    for v in late:
        h.observe(v)
    period = h.since(mark)
    alone = filled(late)
    assert period.count == len(late)
    assert period.sum == pytest.approx(math.fsum(late), rel=1e-9)
    assert period._counts == alone._counts
    for q in QS:
        assert within(period.quantile(q), exact(late, q))
    # min and max are read off the buckets: within the error, not exact.
    assert within(period.min, min(late)) and within(period.max, max(late))


def test_since_a_mark_survives_a_collapse_in_between() -> None:
    h = filled([10.0**e for e in range(-3, 4)], max_buckets=20)
    mark = h.mark()
    late = [10 ** (k / 10) for k in range(-60, 61)]  # a wide spread that forces a collapse
    for v in late:
        h.observe(v)
    period = h.since(mark)
    assert period.count == len(late)
    assert sum(period._counts.values()) + period.zero_count == len(late)
    assert within(period.quantile(0.99), exact(late, 0.99))


def test_since_a_mark_of_an_unchanged_histogram_is_empty() -> None:
    h = filled([1.0, 2.0])
    period = h.since(h.mark())
    assert period.count == 0 and period.summary()["p99"] is None


# -- counters --------------------------------------------------------------------------------------------


def test_counters_count_up_and_labelled_parts_add_to_the_total() -> None:
    m = MetricsCollector(0.0)
    m.inc(FILES_PROCESSED)
    m.inc(FILES_PROCESSED, 4)
    m.inc(FAILURES, label="Timeout")
    m.inc(FAILURES, 2, label="WorkerCrash")
    m.inc(FAILURES, label="Timeout")
    assert m.counter(FILES_PROCESSED) == 5
    assert m.counter(FAILURES) == 4
    assert m.counter(FAILURES, "Timeout") == 2
    assert m.labels(FAILURES) == {"Timeout": 2, "WorkerCrash": 2}
    assert m.counter("never") == 0 and m.labels("never") == {}
    with pytest.raises(ValueError):
        m.inc(FILES_PROCESSED, -1)
    m.labels(FAILURES)["Timeout"] = 99  # a copy
    assert m.counter(FAILURES, "Timeout") == 2


# -- rates -----------------------------------------------------------------------------------------------


def test_rates_are_exact_counts_over_whole_one_second_buckets() -> None:
    m = MetricsCollector(0.0)
    for second in range(200):
        m.inc(FILES_PROCESSED, 2, now=second + 0.5)
    # The 1m window at 200.5 is buckets 141..200: 59 seconds of events (141.5 .. 199.5), over 59.5 s.
    assert m.rate(FILES_PROCESSED, 60, 200.5) == pytest.approx(2 * 59 / 59.5)
    # 5m and 15m reach back before the start: divided by the 200.5 s since then.
    assert m.rate(FILES_PROCESSED, 300, 200.5) == pytest.approx(400 / 200.5)
    assert m.rate(FILES_PROCESSED, 900, 200.5) == pytest.approx(400 / 200.5)


def test_rates_roll_off_as_time_passes() -> None:
    m = MetricsCollector(0.0)
    for i in range(600):  # 10 events a second for the first minute
        m.inc(EVENTS_RECEIVED, now=i / 10)
    assert m.rate(EVENTS_RECEIVED, 60, 59.95) == pytest.approx(600 / 59.95)
    assert m.rate(EVENTS_RECEIVED, 60, 121.0) == 0.0  # the minute has rolled off the 1m window ...
    assert m.rate(EVENTS_RECEIVED, 300, 121.0) == pytest.approx(600 / 121.0)  # ... not off the 5m one
    assert m.rate(EVENTS_RECEIVED, 300, 400.0) == 0.0
    assert m.rate(EVENTS_RECEIVED, 900, 400.0) == pytest.approx(600 / 400.0)
    assert m.rate(EVENTS_RECEIVED, 900, 960.0) == 0.0


def test_the_first_second_is_not_a_division_by_almost_zero() -> None:
    m = MetricsCollector(10.0)
    for _ in range(50):
        m.inc(EVENTS_RECEIVED, now=10.01)
    assert m.rate(EVENTS_RECEIVED, 60, 10.01) == 50.0  # over one bucket, not 0.01 s


def test_rate_memory_is_bounded_by_the_longest_window() -> None:
    m = MetricsCollector(0.0)
    for i in range(36_000):  # an hour at 10 events a second
        m.inc(FILES_PROCESSED, now=i / 10)
    rate = m._rates[FILES_PROCESSED]
    assert len(rate._indexes) <= 900 and len(rate._totals) == len(rate._indexes)
    assert m.rate(FILES_PROCESSED, 900, 3599.95) == pytest.approx(10.0, rel=1e-3)
    assert m.counter(FILES_PROCESSED) == 36_000


def test_a_now_slightly_older_than_the_last_is_counted_not_lost() -> None:
    m = MetricsCollector(0.0)
    m.inc(FILES_PROCESSED, now=5.2)
    m.inc(FILES_PROCESSED, now=4.9)  # read from the clock a moment before the first one
    assert m.rate(FILES_PROCESSED, 60, 5.5) == pytest.approx(2 / 5.5)


def test_rates_exist_only_for_counters_given_now_and_windows_within_the_history() -> None:
    m = MetricsCollector(0.0)
    m.inc(RESTARTS)
    assert m.rate(RESTARTS, 60, 10.0) == 0.0
    assert m.snapshot(10.0)["rates"] == {}
    with pytest.raises(ValueError):
        m.rate(RESTARTS, 901, 10.0)
    with pytest.raises(ValueError):
        m.rate(RESTARTS, 0, 10.0)


def test_coarser_rate_buckets_are_allowed() -> None:
    m = MetricsCollector(0.0, MetricsConfig(rate_bucket_s=5.0))
    for second in range(100):
        m.inc(FILES_PROCESSED, now=float(second))
    # now 99.0 is in bucket [95, 100); 12 buckets reach back to 40: events 40 .. 99 over 59 s.
    assert m.rate(FILES_PROCESSED, 60, 99.0) == pytest.approx(60 / 59)


# -- gauges ----------------------------------------------------------------------------------------------


def test_gauges_keep_the_latest_value_and_min_max_avg_over_the_last_minute() -> None:
    m = MetricsCollector(0.0)
    for second in range(120):
        m.set_gauge("queue_depth.pending", second, now=second + 0.5)
    g = m.gauge("queue_depth.pending", 119.6)
    assert g is not None
    assert g.value == 119 and g.age_s == pytest.approx(0.1)
    assert (g.min, g.max) == (60, 119)  # seconds 60 .. 119: the older ones rolled off
    assert g.avg == pytest.approx(statistics.fmean(range(60, 120)))
    assert len(m._gauges["queue_depth.pending"].slots) == 60
    shorter = m.gauge("queue_depth.pending", 119.6, window_s=10)
    assert shorter is not None and (shorter.min, shorter.max) == (110, 119)


def test_setting_a_gauge_often_does_not_shorten_its_minute() -> None:
    m = MetricsCollector(0.0)
    for tenth in range(1200):  # ten samples a second for two minutes
        m.set_gauge("workers_busy", 100 if tenth == 650 else 1, now=tenth / 10)
    g = m.gauge("workers_busy", 119.9)
    assert g is not None and (g.min, g.max) == (1, 100)  # the spike at 65.0 s is still in the minute
    assert g.avg == pytest.approx((599 + 100) / 600)
    assert len(m._gauges["workers_busy"].slots) == 60


def test_a_gauge_not_set_for_a_minute_keeps_its_value_but_no_statistics() -> None:
    m = MetricsCollector(0.0)
    m.set_gauge("worker.3.rss_bytes", 1.5e8, now=1.0)
    g = m.gauge("worker.3.rss_bytes", 100.0)
    assert g is not None and g.value == 1.5e8 and g.age_s == 99.0
    assert (g.min, g.max, g.avg) == (None, None, None)
    assert m.gauge("nothing", 100.0) is None


def test_dropping_a_slots_gauges() -> None:
    m = MetricsCollector(0.0)
    for name in ("worker.3.rss_bytes", "worker.3.cpu_percent", "worker.30.rss_bytes", "workers_busy"):
        m.set_gauge(name, 1.0, now=0.0)
    assert m.drop_gauges("worker.3.") == 2
    assert sorted(m.snapshot(1.0)["gauges"]) == ["worker.30.rss_bytes", "workers_busy"]


# -- snapshots -------------------------------------------------------------------------------------------


def busy_collector() -> MetricsCollector:
    """Three minutes of a service at work: one file a second, every tenth one failing."""
    rng = random.Random(11)
    m = MetricsCollector(0.0)
    for second in range(180):
        now = second + 0.25
        m.inc(EVENTS_RECEIVED, 2, now=now)
        m.inc(FILES_PROCESSED, now=now)
        if second % 10 == 9:
            m.inc(FAILURES, label="Timeout" if second % 20 == 9 else "FileContent", now=now)
        else:
            m.inc(SUCCESSES, now=now)
        m.observe(PROCESSING_S, rng.lognormvariate(-2, 1))
        m.observe(QUEUE_WAIT_S, rng.expovariate(10))
        m.observe(FILE_SIZE_BYTES, rng.randint(0, 10_000))
        m.set_gauge("queue_depth.pending", rng.randint(0, 50), now)
        m.set_gauge("coordinator.rss_bytes", 5e7 + second, now)
    return m


def test_the_snapshot_is_plain_json_with_every_section() -> None:
    m = busy_collector()
    snap = m.snapshot(180.0)
    text = json.dumps(snap, allow_nan=False)
    assert json.loads(text) == snap
    assert snap["counters"][FILES_PROCESSED] == 180
    assert snap["counters"][FAILURES] == 18
    assert snap["counters_by_label"] == {FAILURES: {"FileContent": 9, "Timeout": 9}}
    assert set(snap["gauges"]["queue_depth.pending"]) == {"value", "age_s", "min_1m", "max_1m", "avg_1m"}
    # The minute is seconds 121 .. 180 (the one `now` is in, and 59 before it).
    assert snap["gauges"]["coordinator.rss_bytes"]["min_1m"] == 5e7 + 121
    hist = snap["histograms"][PROCESSING_S]
    assert set(hist) == {"count", "sum", "min", "max", "mean", "p50", "p90", "p95", "p99"}
    assert hist["count"] == 180 and hist["min"] <= hist["p50"] <= hist["p90"] <= hist["p99"] <= hist["max"]
    rates = snap["rates"][FILES_PROCESSED]
    assert set(rates) == {"1m", "5m", "15m"}
    assert rates["1m"] == pytest.approx(59 / 59)  # buckets 121 .. 180: events 121.25 .. 179.25, over 59 s
    assert rates["5m"] == pytest.approx(180 / 180.0)


def test_a_fresh_snapshot_has_the_well_known_names_at_zero_and_is_json() -> None:
    snap = MetricsCollector(0.0).snapshot(0.0)
    json.dumps(snap, allow_nan=False)
    assert snap["counters"] == dict.fromkeys(sorted(COUNTERS), 0)
    assert sorted(snap["histograms"]) == sorted(HISTOGRAMS)
    assert snap["histograms"][PROCESSING_S]["p95"] is None
    assert snap["gauges"] == {} and snap["rates"] == {}


def test_histograms_appear_on_first_use() -> None:
    m = MetricsCollector(0.0)
    assert m.histogram("render_s") is None
    m.observe("render_s", 0.5)
    h = m.histogram("render_s")
    assert h is not None and h.count == 1


# -- periods ---------------------------------------------------------------------------------------------


def test_the_period_summary_covers_only_the_time_since_the_checkpoint() -> None:
    m = MetricsCollector(0.0)
    for i in range(100):  # a first period of slow jobs, all failing
        m.inc(FILES_PROCESSED, now=float(i))
        m.inc(FAILURES, label="Timeout", now=float(i))
        m.observe(PROCESSING_S, 10.0)
    mark = m.checkpoint(100.0)
    for i in range(50):  # then fast jobs, a few failing otherwise
        now = 100.0 + i
        m.inc(EVENTS_RECEIVED, now=now)
        m.inc(FILES_PROCESSED, now=now)
        m.observe(PROCESSING_S, 0.1 if i < 45 else 0.3)
        m.observe(FILE_SIZE_BYTES, 1000)
        if i < 40:
            m.inc(SUCCESSES, now=now)
        else:
            m.inc(FAILURES, label="WorkerCrash" if i % 2 else "FileContent", now=now)
    entry = m.period_summary(mark, 160.0)
    json.dumps(entry, allow_nan=False)
    assert entry["period"] == {"start": 100.0, "end": 160.0, "seconds": 60.0}
    stats = entry["statistics"]
    assert (stats[FILES_PROCESSED], stats[SUCCESSES], stats[FAILURES]) == (50, 40, 10)
    assert stats["success_rate"] == 0.8
    assert stats["files_per_s"] == pytest.approx(50 / 60) and stats["events_per_s"] == pytest.approx(50 / 60)
    assert stats["avg_processing_ms"] == pytest.approx((45 * 100 + 5 * 300) / 50)
    assert within(stats["p50_processing_ms"], 100.0) and within(stats["p95_processing_ms"], 300.0)
    assert stats["bytes_processed"] == 50_000
    assert stats["avg_queue_wait_ms"] is None  # nothing waited in this period
    assert entry["errors_by_category"] == {"FileContent": 5, "WorkerCrash": 5}  # the Timeouts were before


def test_an_empty_period_and_wall_clock_times() -> None:
    m = MetricsCollector(0.0)
    mark = m.checkpoint(0.0)
    entry = m.period_summary(mark, 60.0, wall_now=1_700_000_060.0)
    assert entry["period"] == {"start": "2023-11-14T22:13:20+00:00", "end": "2023-11-14T22:14:20+00:00",
                               "seconds": 60.0}  # fmt: skip
    stats = entry["statistics"]
    assert stats[FILES_PROCESSED] == 0 and stats["success_rate"] is None and stats["files_per_s"] == 0.0
    assert stats["avg_processing_ms"] is None and stats["p95_processing_ms"] is None
    assert entry["errors_by_category"] == {}
    # A zero-length period (two calls at the same now) has no rates rather than a division by zero.
    assert m.period_summary(m.checkpoint(60.0), 60.0)["statistics"]["files_per_s"] is None


def test_checkpoints_are_independent_so_two_consumers_can_have_their_own_periods() -> None:
    m = MetricsCollector(0.0)
    log_mark, report_mark = m.checkpoint(0.0), m.checkpoint(0.0)
    m.inc(FILES_PROCESSED, 3)
    log_mark = m.checkpoint(10.0)
    m.inc(FILES_PROCESSED, 2)
    assert m.period_summary(log_mark, 20.0)["statistics"][FILES_PROCESSED] == 2
    assert m.period_summary(report_mark, 20.0)["statistics"][FILES_PROCESSED] == 5


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"relative_error": 0.0},
        {"relative_error": 1.0},
        {"max_buckets": 0},
        {"gauge_history_s": 0},
        {"rate_bucket_s": 0.0},
        {"rate_history_s": 600.0},
    ],
)
def test_settings_that_make_no_sense_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MetricsConfig(**bad)  # type: ignore[arg-type]


def test_count_over_a_window_is_not_extrapolated_from_a_young_run() -> None:
    from coordinator.metrics import MetricsCollector

    c = MetricsCollector(started=100.0)
    for t in (100.2, 100.5, 101.0, 101.4, 102.0, 102.1, 102.2):
        c.inc("restarts", now=t)
    assert c.count("restarts", 60, 102.6) == 7  # seven restarts, not 7 / 2.6 s * 60 = 161 "per minute"
    assert c.count("restarts", 1, 102.6) == 3
    assert c.count("restarts", 60, 170.0) == 0  # they roll off
    assert c.count("nothing", 60, 170.0) == 0
