"""The official Anthropic Python SDK through Latchkey's /proxy/anthropic, plain and streamed.
argv: base URL, proxy key. Prints one JSON line."""
import json
import sys

import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2])
msg = client.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=32,
    messages=[{"role": "user", "content": "Say hello"}],
)
with client.messages.stream(
    model="claude-sonnet-4-5",
    max_tokens=32,
    messages=[{"role": "user", "content": "Say hello"}],
) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
print(json.dumps({
    "text": msg.content[0].text,
    "usage": msg.usage.output_tokens,
    "stream": streamed,
    "stream_output_tokens": final.usage.output_tokens,
}))
