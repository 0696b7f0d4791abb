"""Trainings on the pool: the request (request.py), the queue's order (queue.py, pure),
the rows (store.py), the container a training gets (launch.py, pure), a training's
output read bounded and checked (output.py, pure), the dispatcher that starts, watches,
requeues and ends them (dispatch.py, built from parts that share context.py:
queue_pass.py, starting.py, watching.py, reading.py, settling.py) and the REST API
(api.py)."""
