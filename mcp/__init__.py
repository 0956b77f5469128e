"""The Model Control Plane: settings, Kafka transport, Redis task store, registry, heartbeats."""
