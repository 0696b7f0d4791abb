"""The GpuMonitor widget: live charts of this server's GPUs, CPU and memory in a cell's
output, fed by the server extension's metrics socket (gpupool/metrics/ws) in the browser,
so the kernel does no sampling of its own."""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

STATIC = Path(__file__).parent / "static"


class GpuMonitor(anywidget.AnyWidget):
    """``GpuMonitor()`` in a cell: utilization and in-slice memory per GPU, CPU against the
    server's limit, one sample a second; ``window`` samples are kept on the charts."""

    _esm = STATIC / "gpu_monitor.js"

    window = traitlets.Int(120, help="samples on the charts (one a second)").tag(sync=True)

    @traitlets.validate("window")
    def _window(self, proposal: dict[str, int]) -> int:
        if not 10 <= proposal["value"] <= 3600:
            raise traitlets.TraitError(f"window: from 10 to 3600 samples, got {proposal['value']}")
        return proposal["value"]
