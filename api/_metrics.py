"""Prometheus metrics of one app, fed by the hub's event observer.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests,
embedding) never clash over the process-wide default registry.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from orchestrator import Event, FanOutHub

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class ApiMetrics:
    """The app's metrics: gauges read the hub, counters follow its events."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._hub: FanOutHub | None = None
        self.active_fanouts = Gauge(
            "fanout_active_fanouts", "Fan-outs running now.", registry=self.registry
        )
        self.agent_streams = Gauge(
            "fanout_active_agent_streams",
            "Agent streams of running fan-outs that have not ended.",
            registry=self.registry,
        )
        self.fanouts = Counter(
            "fanout_fanouts", "Fan-outs started.", ["transport"], registry=self.registry
        )
        self.events = Counter(
            "fanout_events", "Events produced, by type.", ["type"], registry=self.registry
        )
        self.ttft = Histogram(
            "fanout_time_to_first_token_seconds",
            "Time from an agent's start to its first token.",
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.cancellations = Counter(
            "fanout_agent_cancellations",
            "Agents cancelled, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.active_fanouts.set_function(lambda: float(self._hub.active if self._hub else 0))
        self.agent_streams.set_function(
            lambda: float(self._hub.active_agent_streams() if self._hub else 0)
        )

    def bind(self, hub: FanOutHub) -> None:
        """Read gauges from ``hub`` and count its events."""
        self._hub = hub
        hub.add_observer(self.observe)

    def observe(self, event: Event) -> None:
        """Count one event (the hub's observer)."""
        self.events.labels(event.type).inc()
        if event.type == "agent_cancelled":
            self.cancellations.labels(str(event.get("reason", "user"))).inc()
        elif event.type == "fanout_done":
            # The summary has every agent's time to first token, also for agents that were
            # cancelled or failed after their first token.
            for entry in event.get("summary", {}).values():
                ttft = (entry.get("metrics") or {}).get("ttft_s")
                if ttft is not None:
                    self.ttft.observe(ttft)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
