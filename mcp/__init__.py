"""The Model Control Plane: settings, names, errors, Kafka transport, task state in Redis,
projector, registry, heartbeats, blobs (`mcp.blobs`) and webhooks (`mcp.webhooks`)."""
