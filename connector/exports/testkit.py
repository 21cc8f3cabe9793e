"""What the generated apps' own test suites run with, taken from the manifest; the Node.js helpers they
share (a local receiver playing the platform's hook URL, waiting, a sandbox reply) are the template
``templates/shared/testkit.js``."""

from __future__ import annotations

import json

from connector.description.manifest import Manifest


def action_examples(manifest: Manifest) -> str:
    """Each action with its first schema example, as JavaScript; an action that takes a campaign id gets
    the one the action before it answered (cancel what was scheduled)."""
    examples = []
    for action in manifest.actions:
        schema = manifest.catalog.resolved(action.input)
        examples.append(
            {
                "key": action.key,
                "input": (schema.get("examples") or [{}])[0],
                "needsCampaign": "campaign_id" in schema.get("properties", {}),
            }
        )
    return json.dumps(examples, indent=2, ensure_ascii=False)


#: The input fields of a search that a send's answer fills: the name of each in that answer.
_SENT_IDS = ("sms_id", "campaign_id")


def search_examples(manifest: Manifest) -> str:
    """Each search with its first schema example, as JavaScript, and which of its fields (``ids``) take an
    id from a send's answer, so that the search finds what the send left."""
    examples = []
    for search in manifest.searches:
        schema = manifest.catalog.resolved(search.input)
        examples.append(
            {
                "key": search.key,
                "input": (schema.get("examples") or [{}])[0],
                "ids": [name for name in _SENT_IDS if name in schema.get("properties", {})],
            }
        )
    return json.dumps(examples, indent=2, ensure_ascii=False)


def firing_input(manifest: Manifest, trigger) -> dict:
    """Input that makes a polled trigger fire on the sandbox: its example, with each bounded whole number
    at its maximum (a credits threshold above any balance)."""
    if not trigger.input:
        return {}
    schema = manifest.catalog.resolved(trigger.input)
    chosen = dict((schema.get("examples") or [{}])[0])
    for key, prop in schema.get("properties", {}).items():
        if prop.get("type") == "integer" and "maximum" in prop:
            chosen[key] = prop["maximum"]
    return chosen
