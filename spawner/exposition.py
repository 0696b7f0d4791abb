"""Prometheus text exposition format 0.0.4: metric families with HELP, TYPE and labels."""

from __future__ import annotations

from dataclasses import dataclass, field


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Family:
    name: str
    type: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | None, **labels: str) -> None:
        if value is not None:  # a missing reading is left out, never written as NaN
            self.samples.append((labels, value))


def _number(v: float) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def render(families: list[Family]) -> str:
    out: list[str] = []
    for f in families:
        out.append(f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        out.append(f"# TYPE {f.name} {f.type}")
        for labels, value in f.samples:
            if labels:
                inner = ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items())
                out.append(f"{f.name}{{{inner}}} {_number(value)}")
            else:
                out.append(f"{f.name} {_number(value)}")
    return "\n".join(out) + "\n"
