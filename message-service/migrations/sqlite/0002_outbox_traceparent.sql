-- The W3C trace context of the call that wrote each outbox row, so the
-- relay's publish and the consumers' handling join that call's trace.
-- NULL when spans were not exported.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
