"""NVML reading, shared by the node agent and the lab: it depends on neither side.

- ``binding``: which module provides NVML (pynvml, the simulated GPUs, a test's fake);
- ``readings``: the data read (inventory, NVML's state, per-GPU and per-process readings,
  Xid events, samples);
- ``reader``: ``NvmlReader``, NVML started, restarted after failures, and read;
- ``xid``: the Xid critical-error watcher and the log of recent events;
- ``cgroups``: a GPU process's container from its cgroup, and that container's labels;
- ``sampler``: ``NodeSampler``, the node agent's samples taken in a thread;
- ``simulated``: a pynvml stand-in for demo nodes without GPUs.
"""
