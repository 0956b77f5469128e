"""The Model Control Plane: settings, names, errors, Kafka transport and consume-produce
transactions, task state in Redis, projector, replay, registry, heartbeats, blobs (`mcp.blobs`)
and webhooks (`mcp.webhooks`)."""
