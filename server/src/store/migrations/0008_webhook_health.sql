-- A webhook whose events keep failing is switched off rather than retried
-- for ever: `failed_in_a_row` counts events FAILED since the last one
-- DELIVERED, and at `webhooks.disable_after_failed_events` the webhook is
-- disabled (`disabled_ms`): no delivery is attempted and no event queued
-- for it until its workspace enables it again.
ALTER TABLE webhooks ADD COLUMN failed_in_a_row INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN disabled_ms INTEGER;
