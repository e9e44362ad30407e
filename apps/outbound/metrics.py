"""Outbound freshness for ``/metrics`` (listed in ``METRICS_COLLECTORS``): commit-to-delivery
time per subscription, its p50 and p95 over the last deliveries as gauges labelled by quantile."""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.outbound.models import Subscription
from apps.outbound.selectors import freshness


class DeliveryFreshnessCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "controltower_outbound_commit_to_delivery_seconds",
            "Time from the commit that published an event to the subscriber's 2xx, over each active "
            "subscription's last deliveries (quantile 0.5 and 0.95).",
            labels=["subscription", "partner", "quantile"],
        )
        subscriptions = {
            pk: (name, partner)
            for pk, name, partner in Subscription.objects.filter(active=True).values_list("pk", "name", "partner__code")
        }
        for pk, measured in sorted(freshness(subscription_ids=list(subscriptions)).items()):
            name, partner = subscriptions[pk]
            for quantile, value in (("0.5", measured.p50_ms), ("0.95", measured.p95_ms)):
                family.add_metric([name, partner, quantile], value / 1000)
        yield family
