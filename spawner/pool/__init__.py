"""The pool service, a hub-managed JupyterHub service and the single writer of cluster
state (service.py). docs/architecture.md lists its modules by role: web base and API,
pages, ledger, placement, health, trainings/."""
