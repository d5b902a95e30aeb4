"""Alerts: live cramp alerts (MQTT + signed webhooks) and night-level red flags for clinicians.

See ``docs/alerts.md``. Nothing is built at import; the composition root wires the parts.
"""
