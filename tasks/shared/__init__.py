"""What every loop shares: scrubbing, retries, the schema, the HTTP runner, the browser, the
local target, alerts, dashboards and read-only queries."""
