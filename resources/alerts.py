"""Operators hear about trouble: an alert is a JSON POST to a webhook (RISK_ALERT_WEBHOOK;
Slack-compatible: the ``text`` field reads on its own). No webhook: alerts are logged only.
Sending never raises: an unreachable receiver must not fail the run that noticed trouble."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from dagster import ConfigurableResource

log = logging.getLogger("risk.alerts")


class AlertWebhook(ConfigurableResource):
    url: str = ""  # empty: log only
    timeout_s: float = 5.0

    def send(self, kind: str, text: str, **details) -> bool:
        """POST ``{"kind", "text", **details}``; True when the receiver accepted it."""
        log.warning("alert %s: %s", kind, text)
        if not self.url:
            return False
        body = json.dumps({"kind": kind, "text": text, **details}, default=str).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        for attempt in (1, 2):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return 200 <= response.status < 300
            except (urllib.error.URLError, OSError) as exc:
                log.error("alert %s not delivered (attempt %d): %s", kind, attempt, exc)
        return False
