"""boto3's bedrock-runtime through Latchkey, signing with the proxy key as its access key id
(Latchkey re-signs with the real AWS credential). argv: endpoint URL, proxy key. Prints JSON."""
import json
import sys

import boto3

client = boto3.client(
    "bedrock-runtime",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    aws_access_key_id=sys.argv[2],
    aws_secret_access_key="not-used-latchkey-re-signs",
)
model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
invoked = client.invoke_model(
    modelId=model,
    body=json.dumps({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }),
)
invoke_body = json.loads(invoked["body"].read())
conversed = client.converse(
    modelId=model,
    messages=[{"role": "user", "content": [{"text": "hi"}]}],
)
# The streaming variants: AWS event-stream frames pass through untouched.
streamed_events = 0
resp = client.invoke_model_with_response_stream(
    modelId=model,
    body=json.dumps({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }),
)
for event in resp["body"]:
    if "chunk" in event:
        streamed_events += 1
converse_stream_text = ""
for event in client.converse_stream(
    modelId=model,
    messages=[{"role": "user", "content": [{"text": "hi"}]}],
)["stream"]:
    delta = event.get("contentBlockDelta", {}).get("delta", {})
    converse_stream_text += delta.get("text", "")
print(json.dumps({
    "invoke": invoke_body["content"][0]["text"],
    "converse": conversed["output"]["message"]["content"][0]["text"],
    "converse_tokens": conversed["usage"]["totalTokens"],
    "invoke_stream_chunks": streamed_events,
    "converse_stream": converse_stream_text,
}))
