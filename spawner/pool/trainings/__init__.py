"""Trainings on the pool: the request (request.py), the queue's order (queue.py, pure),
the rows (store.py), the container a training gets (launch.py, pure), the dispatcher that
starts, watches, requeues and ends them (dispatch.py) and the REST API (api.py)."""
