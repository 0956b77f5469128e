"""The webhook dispatcher: task results and lifecycle events become signed, retried POSTs."""
