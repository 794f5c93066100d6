"""The halt: where it is decided, how it is set, how it is served.

- `state.py`    the halt state and its transitions (halt, unhalt, which orders may pass): pure.
- `policy.py`   every automatic halt decision, from facts to a `Decision`: PnL limits, execution
                failures, an authentication spike, dead letters, a database outage, reconciliation
                drift; the flatten rounds. Pure, tested with a fake clock.
- `gate.py`     the Redis side the executor and the risk manager read (the gate before the adapter).
- `store.py`    the one way to set the live flag (halt, reconcile, start-up and backup restore) and
                to record a transition in the database.
- `service.py`  applying decisions: flag and notification, then the answer, then the record.
"""
