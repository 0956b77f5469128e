"""Webhooks, all of them: task results and lifecycle events become signed, retried POSTs.

| module | owns |
|---|---|
| `events` | what a webhook says: type, stable `webhook-id`, body (the task's poll view) |
| `store`, `scripts` | the durable schedule in Redis: deliveries, due queues, dead letters |
| `signing`, `secrets` | Standard Webhooks signatures; which secrets sign a project's webhooks |
| `ssrf`, `transport` | where webhooks may go (checked at submit and delivery), pinned connects |
| `targets` | where a running task's `task.started` / `task.output` webhooks go |
| `intake` | Kafka `task-results` + `task-events` -> scheduled deliveries |
| `output` | a running task's token stream -> throttled `task.output` webhooks |
| `policy`, `sender`, `pool` | retry schedule, one attempt, bounded concurrent attempts |
| `dispatcher`, `main` | the `autoglm dispatcher` process |

The API uses `ssrf` (at submit) and `store` (poll view, redeliver); everything else runs in the
dispatcher process.
"""
