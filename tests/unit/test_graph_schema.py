"""The graph document's JSON Schema (gpupool.graph.schema) is a valid draft 2020-12
schema, accepts every template, and never accepts what gpupool refuses: over the
conformance corpus (every layer with good and bad parameters, merges, malformed and
random documents), a document the schema refuses is refused by load or has a layer in
error."""

from __future__ import annotations

import jsonschema
import pytest

from gpupool.graph import TEMPLATES, GraphError, load, template
from gpupool.graph.schema import json_schema
from tests.unit.test_graph_conformance import MALFORMED, layer_cases, merge_cases, random_cases


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_templates_are_valid(validator: jsonschema.Draft202012Validator) -> None:
    for name in TEMPLATES:
        assert not list(validator.iter_errors(template(name).to_json())), name


def test_what_the_schema_refuses_gpupool_refuses(
    validator: jsonschema.Draft202012Validator,
) -> None:
    docs = layer_cases() + merge_cases() + MALFORMED + random_cases(seed=11, count=400)
    refused = 0
    for doc in docs:
        if validator.is_valid(doc):
            continue
        refused += 1
        try:
            inf = load(doc).infer()
        except GraphError:
            continue
        assert not inf.ok, f"the schema refuses, gpupool accepts: {doc}"
    assert refused > 1000  # the corpus tests the schema's refusals, not only its passes


def test_a_bad_parameter_is_named(validator: jsonschema.Draft202012Validator) -> None:
    doc = template("mlp").to_json()
    doc["nodes"][1]["params"]["out_features"] = 0
    errors = list(validator.iter_errors(doc))
    assert errors and any("out_features" in list(e.absolute_path) for e in _leaves(errors))


def _leaves(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    out = []
    for e in errors:
        out += _leaves(list(e.context)) if e.context else [e]
    return out
