"""Drives Latchkey with the official OpenAI Python SDK, configured only through the two
variables `latchkey env` prints (OPENAI_API_KEY, OPENAI_BASE_URL). Prints one JSON line."""
import json

from openai import OpenAI

client = OpenAI()  # reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment

chat = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
)
streamed = []
for chunk in client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        streamed.append(chunk.choices[0].delta.content)

try:
    OpenAI(api_key="lk_not_a_real_key").models.list()
    refused = None
except Exception as e:  # openai.AuthenticationError
    refused = getattr(e, "status_code", None)

print(json.dumps({
    "chat": chat.choices[0].message.content,
    "usage": chat.usage.total_tokens,
    "stream": "".join(streamed),
    "stream_chunks": len(streamed),
    "refused_status": refused,
}))
