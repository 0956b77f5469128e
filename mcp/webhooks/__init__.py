"""Webhooks, all of them: task results and lifecycle events become signed, retried POSTs.

| module | owns |
|---|---|
| `events` | what a webhook says: type, stable `webhook-id`, body (the task's poll view) |
| `deliveries` | a delivery to send or claimed, its first record, its hash in Redis |
| `journal` | every delivery state committed to Kafka `webhook-deliveries` before Redis sees it |
| `projection` | Redis's webhook state as a projection of that topic, rebuilt when Redis lost it |
| `store`, `scripts` | the Redis schedule: deliveries, due queues, dead letters, attempt history |
| `signing`, `secrets` | Standard Webhooks signatures; which secrets sign a project's webhooks |
| `ssrf`, `transport` | where webhooks may go (checked at submit and delivery), pinned connects |
| `targets` | where a running task's `task.started` / `task.output` webhooks go |
| `intake` | Kafka `task-results` + `task-events` -> scheduled deliveries |
| `output` | a running task's token stream -> throttled `task.output` webhooks |
| `policy`, `sender`, `pool` | retry schedule, one attempt, bounded concurrent attempts |
| `dispatcher`, `main` | the `autoglm dispatcher` process |

The API uses `ssrf` (at submit), `store` (poll view, redeliver) and `projection` (the record a
redelivery commits); `autoglm replay` uses `projection`; everything else runs in the dispatcher
process.
"""
