"""A review nested too deeply for Python's JSON decoder is refused with a field path (issue 13's fuzz suite:
Kopf answered 500 and the user read "failed calling webhook").

Pins:
- the iterative scan finds the path to the first container opened past the limit, whatever strings hold
  (brackets, escaped quotes, keys with dots) and however lists and objects alternate;
- the denial echoes the review's uid and apiVersion, answers 422 and names the field in the admission
  rules' words; nothing that deep, or no uid: no denial (the caller answers 400);
- through a real `AdmissionWebhookServer`: a 1,000-level review gets that denial (200, allowed false),
  while a review with many brackets but shallow still reaches the handler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, cast

import aiohttp
import kopf
import pytest

from trainsmart.admission.review_depth import may_be_too_deep, path_deeper_than, too_deep_denial
from trainsmart.admission.rules import MAX_SPEC_DEPTH
from trainsmart.admission.webhook import AdmissionWebhookServer
from trainsmart.devcluster.controlplane import free_port


def nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def deep_review(depth: int, version: str = "admission.k8s.io/v1") -> str:
    spec = {"replicas": 1, "affinity": {"nodeAffinity": nested(depth)}}
    obj = {"apiVersion": "trainsmart.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"uid": "obj"}, "spec": spec}
    review = {"kind": "AdmissionReview", "apiVersion": version, "request": {"uid": "u-42", "object": obj}}
    # Built by hand: json.dumps recurses too, and cannot write what json.loads cannot read.
    return _dump(review)


def _dump(value: Any) -> str:
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            parts.append(item.text)
        elif isinstance(item, dict):
            stack.append(_Raw("}"))
            for position, (key, child) in reversed(list(enumerate(item.items()))):
                stack.append(child)
                stack.append(_Raw(("," if position else "") + json.dumps(key) + ":"))
            stack.append(_Raw("{"))
        elif isinstance(item, list):
            stack.append(_Raw("]"))
            for position, child in reversed(list(enumerate(item))):
                stack.append(child)
                if position:
                    stack.append(_Raw(","))
            stack.append(_Raw("["))
        else:
            parts.append(json.dumps(item))
    return "".join(parts)


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text


def test_the_scan_follows_keys_and_indices_and_skips_what_strings_hold() -> None:
    text = json.dumps({'a\\"{[': ']}{"', "b.c": [1, {"d": [[{"e": {}}]]}]})
    assert path_deeper_than(text, 5) == ("b.c", 1, "d", 0, 0)
    assert path_deeper_than(text, 6) == ("b.c", 1, "d", 0, 0, "e")
    assert path_deeper_than(text, 7) is None
    assert path_deeper_than('{"a": [', 9) is None and path_deeper_than('{"a', 1) is None


def test_a_deep_review_is_denied_at_its_field_with_the_reviews_uid_and_version() -> None:
    text = deep_review(1000, version="admission.k8s.io/v1beta1")
    with pytest.raises(RecursionError):
        json.loads(text)
    assert may_be_too_deep(text)
    denial = too_deep_denial(text)
    assert denial is not None
    assert denial["apiVersion"] == "admission.k8s.io/v1beta1" and denial["kind"] == "AdmissionReview"
    response = denial["response"]
    assert response["uid"] == "u-42" and response["allowed"] is False and response["status"]["code"] == 422
    message = response["status"]["message"]
    assert message.startswith("spec.affinity.nodeAffinity: is nested too deeply"), message
    assert f"more than {MAX_SPEC_DEPTH} levels" in message


def test_no_denial_without_depth_or_without_a_uid() -> None:
    assert too_deep_denial(deep_review(10)) is None
    assert too_deep_denial(deep_review(1000).replace('"uid"', '"id"')) is None
    assert not may_be_too_deep(deep_review(10))


async def _post(server: kopf.WebhookServer, text: str) -> tuple[int, Any, list[Any]]:
    seen: list[Any] = []

    async def handler(data: Any, **_: Any) -> Any:
        seen.append(data)
        uid = data["request"]["uid"]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    configs = cast("AsyncGenerator[kopf.WebhookClientConfig, None]", server(handler))
    await anext(configs)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/validate-trainingjob"
            async with session.post(url, data=text.encode()) as response:
                body = await response.json() if response.status == 200 else await response.text()
                return response.status, body, seen
    finally:
        await configs.aclose()


@pytest.mark.asyncio
async def test_the_server_denies_a_review_too_deep_to_decode_and_passes_wide_ones_on() -> None:
    server = AdmissionWebhookServer(addr="127.0.0.1", port=free_port(), insecure=True)
    status, body, seen = await _post(server, deep_review(1000))
    assert status == 200 and not seen, body
    assert body["response"]["allowed"] is False and "spec.affinity" in body["response"]["status"]["message"]

    wide = deep_review(3).replace('"replicas":1', '"replicas":1,"x":' + json.dumps([[{}] for _ in range(600)]))
    assert may_be_too_deep(wide)
    server = AdmissionWebhookServer(addr="127.0.0.1", port=free_port(), insecure=True)
    status, body, seen = await _post(server, wide)
    assert status == 200 and body["response"]["allowed"] is True and len(seen) == 1
