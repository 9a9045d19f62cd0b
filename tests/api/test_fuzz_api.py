"""Bad input against the HTTP API: schemathesis generates requests from ``/openapi.json``.

Every operation of the in-process app (schemathesis's ASGI transport runs the app's
lifespan in its own event loop thread) gets valid and invalid requests: no ``500``, every
response conforms to the schema, and every ``4xx`` JSON body names the problem in a
non-empty message. The agents are short scripted ones, so the streaming endpoints end.

The app has an API key (as when it is exposed beyond loopback); the requests carry it, and
schemathesis's auth checks send them without it too. A second run plants hostile values in
the generated bodies: lone surrogates, control characters, characters outside the BMP and
nested arrays hundreds of levels deep.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import orjson
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, HookContext, Response
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import ApiSettings, create_app
from orchestrator import ScriptedDirectory, ScriptedSource, text_problem

from .conftest import open_api

#: Per operation and generation mode; the whole file runs in well under a minute.
MAX_EXAMPLES = 25
#: Both agents a fuzzed request can name (besides random, unknown ones that end at once).
AGENT_IDS = ("alpha", "beta")
KEY = "fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _short(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["Short", " answer."], label=label)


def _app() -> Any:
    directory = ScriptedDirectory(dict.fromkeys(AGENT_IDS, _short))
    # Fuzzing starts many short fan-outs; the default cap of 32 at once is not under test.
    # schemathesis calls the app as http://testserver.
    settings = ApiSettings(max_active_fanouts=1000, allowed_hosts=("testserver",), api_key=KEY)
    return create_app(settings, directory)


def error_names_problem(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A ``4xx`` JSON body is ``{"error": {"code", "message"}}`` with a non-empty message."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered with {content_type!r}, not a JSON error body"
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    error = body.get("error")
    assert isinstance(error, dict), f"error body has no 'error' object: {body!r}"
    code, message = error.get("code"), error.get("message")
    assert isinstance(code, str), f"error without a code: {body!r}"
    assert code, f"error with an empty code: {body!r}"
    assert isinstance(message, str), f"error without a message: {body!r}"
    # A message naming the problem says more than the bare status phrase.
    assert len(message.strip()) >= 8, f"error message too vague: {message!r}"
    return True


#: Rules the schema cannot state because they span fields or come from settings: a
#: schema-valid request may be refused only with one of these codes.
CROSS_FIELD_CODES = frozenset(
    # unknown_preset and unknown_column: a preset is a file of the server's configs folder,
    # a column one of the request's agents (POST /v1/ag-ui, POST /v1/ui-message-stream).
    # no_user_text: useChat's messages must end with a user message holding text.
    {
        "invalid_options",
        "too_many_agents",
        "message_too_large",
        "unknown_preset",
        "unknown_column",
        "no_user_text",
    }
)


def schema_valid_is_accepted(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Like schemathesis's ``positive_data_acceptance``, knowing the cross-field rules."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code < 400 or response.status_code >= 500:
        return None
    if response.status_code in (404, 410) and "{fanout_id}" in case.operation.path:
        return None  # a random fan-out id names nothing: not a schema matter
    code = json.loads(response.content)["error"]["code"]
    assert code in CROSS_FIELD_CODES, (
        f"schema-valid request refused with {response.status_code} {code}: "
        f"{response.content[:300]!r}"
    )
    return True


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())
# An HTTP API ignores headers and query parameters it does not know: not a schema violation.
schema.config.generation.update(allow_extra_parameters=False)


_fuzz_settings = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    # The same examples every run: a failure here reproduces, and CI time stays bounded.
    derandomize=True,
)


@schema.parametrize()
@_fuzz_settings
def test_every_endpoint_answers_bad_input_with_a_named_error(case: Case[Any]) -> None:
    case.call_and_validate(
        headers=AUTH,
        additional_checks=[error_names_problem, schema_valid_is_accepted],
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )


@schema.include(method="POST", path="/v1/fanouts").parametrize()
@_fuzz_settings
def test_streaming_fan_outs_end_and_bad_ones_are_named(case: Case[Any]) -> None:
    """The same bodies with ``Accept: text/event-stream``: a stream that ends, or an error."""
    response = case.call_and_validate(
        headers={"Accept": "text/event-stream", **AUTH},
        additional_checks=[error_names_problem, schema_valid_is_accepted],
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )
    if response.status_code == 200:
        # The stream ended by itself (no cut at the read timeout) with the fan-out's end.
        assert "event: fanout_done" in response.text, response.text[-500:]


@schema.include(path_regex=r"\{fanout_id\}").parametrize()
@_fuzz_settings
def test_operations_on_a_real_fan_out(case: Case[Any]) -> None:
    """Fuzz the other parameters of a fan-out that exists (random ids only reach the 404)."""
    case.path_parameters = {**(case.path_parameters or {}), "fanout_id": _real_fanout_id()}
    case.call_and_validate(headers=AUTH, additional_checks=[error_names_problem], timeout=30)


#: Strings the API must refuse wherever they appear (keys included), naming the field.
refused_strings = st.one_of(
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    st.text(  # control characters, tab and line breaks aside (a message may hold those)
        st.characters(categories=["Cc"], exclude_characters="\t\n\r"), min_size=1, max_size=3
    ),
)
#: Strings outside the BMP: valid text, to be accepted and given back intact.
astral_strings = st.text(st.characters(min_codepoint=0x10000), min_size=1, max_size=4)


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


hostile_values = st.one_of(
    st.tuples(st.text(max_size=3), refused_strings, st.text(max_size=3)).map("".join),
    st.tuples(st.just("a "), astral_strings).map("".join),
    # Deep, but not so deep that the client's own JSON encoder gives up (plain tests send
    # 100 000 levels as raw bytes).
    st.integers(min_value=100, max_value=800).map(_deep),
)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            paths += _leaf_paths(item, (*path, n))
    return paths


def _plant(body: Any, pick: int, value: Any, as_key: bool) -> Any:
    """``body`` with ``value`` at one of its places (or, with ``as_key``, as a new key)."""
    paths = _leaf_paths(body)
    path = paths[pick % len(paths)]
    if not path:
        return value
    body = json.loads(json.dumps(body))  # a copy
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    if as_key and isinstance(parent, dict) and isinstance(value, str):
        parent[value] = parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


def flatmap_body(ctx: HookContext, body: Any) -> Any:
    return st.builds(_plant, st.just(body), st.integers(0, 1000), hostile_values, st.booleans())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


@schema.hooks.apply(flatmap_body)
@schema.include(method="POST").parametrize()
@_fuzz_settings
def test_hostile_strings_and_nesting_are_refused_or_kept_intact(case: Case[Any]) -> None:
    """No ``500``; a refused string gets a named ``4xx``; an accepted body reads back whole."""
    response = case.call_and_validate(
        headers=AUTH,
        additional_checks=[error_names_problem],
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )
    # Every string field refuses these (a message keeps tab and line breaks; names do not).
    refused = [s for s in _strings(case.body) if text_problem(s) is not None]
    if refused:
        assert response.status_code >= 400, (refused, response.text[:300])
    if response.status_code == 201 and case.operation.path == "/v1/fanouts":
        # What was accepted can be read back as strict JSON: the summary and every event.
        with asgi.get_client(schema.app) as client:
            fanout = response.json()["fanout_id"]
            summary = client.get(f"/v1/fanouts/{fanout}", headers=AUTH)
            assert summary.status_code == 200, summary.text
            orjson.loads(summary.content)
            events = client.get(f"/v1/fanouts/{fanout}/events", headers=AUTH)
            assert events.status_code == 200, events.text
            data = [line[6:] for line in events.text.splitlines() if line.startswith("data: ")]
            assert orjson.loads(data[-1])["type"] == "fanout_done"
            for line in data:
                orjson.loads(line)


def _real_fanout_id() -> str:
    if not _REAL:
        with asgi.get_client(schema.app) as client:
            body: dict[str, Any] = {
                "agents": [{"agent_id": "alpha"}, {"agent_id": "beta"}],
                "message": "hi",
            }
            response = client.post("/v1/fanouts", json=body, headers=AUTH)
            assert response.status_code == 201, response.text
            _REAL.append(response.json()["fanout_id"])
    return _REAL[0]


_REAL: list[str] = []


def test_the_schema_covers_every_route() -> None:
    """Guards the fuzzing above: an endpoint missing from the schema would go untested."""
    results = schema.get_all_operations()
    paths = {result.ok().path for result in results if isinstance(result, Ok)}
    assert {
        "/v1/fanouts",
        "/v1/fanouts/{fanout_id}",
        "/v1/fanouts/{fanout_id}/events",
        "/v1/fanouts/{fanout_id}/cancel",
        "/v1/agents",
        "/healthz",
    } <= paths


# Regressions: what the fuzzing above found, pinned with plain requests.


async def test_405_lists_every_method_of_the_path() -> None:
    async with open_api() as api:
        response = await api.client.request("OPTIONS", "/v1/fanouts")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"] == {
        "code": "method_not_allowed",
        "message": "method OPTIONS is not allowed on /v1/fanouts; allowed: GET, POST",
    }


async def test_a_body_that_is_not_utf8_is_invalid_json() -> None:
    async with open_api() as api:
        response = await api.client.post(
            "/v1/fanouts", content=b"\xff\xfe{", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_json"


async def test_the_schema_states_the_rules_the_server_enforces() -> None:
    async with open_api() as api:
        doc = (await api.client.get("/openapi.json")).json()
    agent = doc["components"]["schemas"]["AgentSpec"]
    assert [branch["required"] for branch in agent["anyOf"]] == [["agent_id"], ["name"]]
    parameters = doc["paths"]["/v1/fanouts/{fanout_id}/events"]["get"]["parameters"]
    # Query and header values are absent or an integer, never the text "null".
    assert {p["name"]: p["schema"].get("type") for p in parameters if p["in"] != "path"} == {
        "after": "integer",
        "last-event-id": "integer",
        "coalesce_ms": "integer",
    }
    cancel = doc["paths"]["/v1/fanouts/{fanout_id}/cancel"]["post"]["responses"]
    assert {"404", "410"} <= set(cancel)
