"""The official OpenAI Python SDK against Latchkey's OpenAI-compatible /v1 endpoint, asking for a
model alias from the registry. argv: base URL, proxy key. Prints one JSON line."""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
chat = client.chat.completions.create(
    model="fast",
    messages=[{"role": "user", "content": "Say hello"}],
)
streamed = []
for chunk in client.chat.completions.create(
    model="fast",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        streamed.append(chunk.choices[0].delta.content)
models = [m.id for m in client.models.list()]
try:
    client.chat.completions.create(model="not-registered", messages=[{"role": "user", "content": "x"}])
    refused = None
except Exception as e:  # openai.PermissionDeniedError
    refused = getattr(e, "status_code", None)
print(json.dumps({
    "chat": chat.choices[0].message.content,
    "stream": "".join(streamed),
    "models": models,
    "refused_status": refused,
}))
