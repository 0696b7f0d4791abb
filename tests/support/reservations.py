"""A reservation's state through the lab's client: a released one answers 404 (gone, as
after a DELETE) with its state, when and why in the answer."""

from __future__ import annotations

from gpupool.lab.client import PoolApi, PoolApiError


def reservation_state(client: PoolApi, rid: str) -> str:
    try:
        return str(client.request("GET", f"reservations/{rid}")["state"])
    except PoolApiError as e:
        if e.status == 404 and e.body.get("state"):
            return str(e.body["state"])
        raise
