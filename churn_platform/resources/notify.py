"""Notifications: Slack when a bot token and channel are configured, the run log otherwise."""

import logging

import dagster as dg
from dagster_slack import SlackResource

logger = logging.getLogger("churn_platform.notify")


class Notifier(dg.ConfigurableResource):
    """Posts platform events (promotion decisions, failures) to Slack or to the log.

    An unconfigured notifier never fails a run: it logs the message instead. A configured one
    that cannot post logs the Slack error at ERROR level; the decision it reports stands.
    """

    slack: SlackResource | None = None
    channel: str | None = None

    @property
    def uses_slack(self) -> bool:
        return self.slack is not None and bool(self.channel)

    def send(self, text: str, log: logging.Logger | dg.DagsterLogManager | None = None) -> bool:
        """Deliver `text`; returns True when Slack accepted it."""
        log = log or logger
        if not self.uses_slack:
            log.info(f"[notification] {text}")
            return False
        try:
            self.slack.get_client().chat_postMessage(channel=self.channel, text=text)
        except Exception as err:  # the event itself must not be lost: log it with the error
            log.error(f"[notification] Slack post to {self.channel} failed ({err!r}): {text}")
            return False
        return True
