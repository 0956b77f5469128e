"""What an operator sees of a process: Prometheus metrics, OpenTelemetry traces, JSON logs.

Each process exports its own `/metrics`; traces follow a task from the submitting request
through Kafka and the worker to its webhook; both are off the inference code's path
(STYLE 4: the worker and the dispatcher call in, backends never do).
"""
