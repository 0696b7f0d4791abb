"""Asking a node's agent for a JSON document over HTTP (Tornado's client), with the
node's agent token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from gpupool.catalog.models import Node


class AgentError(RuntimeError):
    pass


async def fetch_agent(node: Node, path: str, timeout: float) -> dict[str, Any]:
    """GET a JSON document from the node's agent with its token."""
    assert node.agent is not None
    try:
        token = node.agent.token()
    except OSError as e:
        raise AgentError(f"cannot read the agent token file: {e}") from None
    req = HTTPRequest(
        f"{node.agent.url}{path}",
        headers={"Authorization": f"token {token}"},
        connect_timeout=timeout,
        request_timeout=timeout,
        ca_certs=node.agent.ca,
        follow_redirects=False,
    )
    try:
        resp = await AsyncHTTPClient().fetch(req)
    except HTTPClientError as e:
        raise AgentError(f"agent {node.agent.url} answered {e.code}") from None
    except (OSError, asyncio.TimeoutError) as e:
        raise AgentError(f"agent {node.agent.url} did not answer: {e}") from None
    try:
        return json.loads(resp.body)
    except ValueError:
        raise AgentError(f"agent {node.agent.url} sent something that is not JSON") from None
