"""The operator, room by room (following one DISyncInstance from the watch to its status write):

- `handlers`    kopf wiring only (`register()`): login, start-up, clean-up, and the watch event that queues the object;
- `runtime/`    the parts that stand in for kopf's machinery (work queue, requeue timer, Events, sweep, Kubernetes
                client, the process's shared state), each with its counterpart and measured reason;
- `worker`      a worker's turn: the right reconcile for a queued object, and errors turned into requeues;
- `reconciler`  one object's reconcile: gathers facts, asks `policy`, applies its typed status updates;
- `policy/`     the rules as pure functions: start decision and intents, status updates, reasons, backoff;
- `task`        the DataWorks seam (observe, start, stop): requests, task types, endpoints;
- `credentials` which AccessKey a CR uses (its Secret, or the operator's identity);
- `settings`, `metrics`, `main`: configuration, Prometheus, and the `run` command.
"""
