"""Health exporters: Prometheus text and OpenTelemetry instruments (ferroloop only)."""

from __future__ import annotations

import asyncio
import re

import ferroloop
import ferroloop.health as fh
import pytest

SAMPLE = re.compile(r'^(ferroloop_[a-z_]+)(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? (\S+)$')


def _parse(text):
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4
        else:
            m = SAMPLE.match(line)
            assert m, line
            float(m.group(4))
            samples.append((m.group(1), m.group(2) or "", float(m.group(4))))
    return types, samples


def test_prometheus_text_for_every_loop(hloop):
    other = ferroloop.new_event_loop()
    try:
        hloop.run_until_complete(asyncio.sleep(0.001))
        text = fh.prometheus()
    finally:
        other.close()
    types, samples = _parse(text)
    assert types["ferroloop_timer_lag_seconds"] == "histogram"
    assert types["ferroloop_callbacks_total"] == "counter"
    assert types["ferroloop_ready_depth"] == "gauge"
    assert all(name.startswith("ferroloop_") for name in types)
    for loop in (hloop, other):
        label = f'loop="{id(loop):#x}"'
        assert any(label in labels for _, labels, _ in samples)
    mine = f'loop="{id(hloop):#x}"'
    buckets = [
        v for n, lab, v in samples if n == "ferroloop_timer_lag_seconds_bucket" and mine in lab
    ]
    assert buckets == sorted(buckets) and buckets[-1] >= 1
    count = next(
        v for n, lab, v in samples if n == "ferroloop_timer_lag_seconds_count" and mine in lab
    )
    assert buckets[-1] == count  # +Inf is every value


def test_prometheus_for_one_loop(hloop):
    other = ferroloop.new_event_loop()
    try:
        text = fh.prometheus(hloop)
    finally:
        other.close()
    assert f'loop="{id(hloop):#x}"' in text and f'loop="{id(other):#x}"' not in text


def test_prometheus_needs_a_ferroloop_loop():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError):
            fh.prometheus(loop)
    finally:
        loop.close()
    with pytest.raises(TypeError):
        fh.prometheus(42)


def test_lag_buckets_and_sum(hloop):
    hloop.run_until_complete(asyncio.sleep(0.001))
    lag = hloop.health()._raw[0]
    assert lag.buckets([0.0, 1e9]) == [0, lag.count]
    assert lag.buckets([float("nan"), -1.0]) == [0, 0]
    assert lag.sum >= 0


class _FakeMeter:
    def __init__(self):
        self.made = []

    def create_observable_counter(self, name, callbacks, unit="", description=""):
        self.made.append((name, "counter", callbacks))
        return name

    def create_observable_gauge(self, name, callbacks, unit="", description=""):
        self.made.append((name, "gauge", callbacks))
        return name


def test_opentelemetry_instruments_observe_every_loop(hloop):
    pytest.importorskip("opentelemetry.metrics", reason="opentelemetry-api is not installed")
    meter = _FakeMeter()
    made = fh.register_opentelemetry(meter)
    assert len(made) == len(meter.made) > 0
    hloop.run_until_complete(asyncio.sleep(0))
    names = {name for name, _, _ in meter.made}
    assert {"ferroloop.loop.callbacks", "ferroloop.loop.utilization"} <= names
    for _name, _kind, (callback,) in meter.made:
        observations = list(callback(None))
        assert any(o.attributes == {"loop": f"{id(hloop):#x}"} for o in observations)


def test_opentelemetry_default_meter_and_bad_meter():
    pytest.importorskip("opentelemetry.metrics", reason="opentelemetry-api is not installed")
    assert fh.register_opentelemetry()
    with pytest.raises(TypeError, match="Meter"):
        fh.register_opentelemetry(42)
