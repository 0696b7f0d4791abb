"""The node agent (``gpupool-agent``), one per GPU node: NVML inventory and metrics over
HTTP, read-only (app.py, handlers.py), as Prometheus text (prometheus.py), the HAMi-core
check (hamicheck.py) and node-side clean-up (janitor.py). NVML reading itself is the
shared ``gpupool.nvml``."""
