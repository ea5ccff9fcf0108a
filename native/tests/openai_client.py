"""The real OpenAI Python client against `strata serve` (run by cli_serve.rs).

argv: base URL, model id, prompt, the text `strata run` generates greedily for it (16
tokens). Every call goes through the unmodified client; a failed check exits non-zero."""

import sys

import openai

base, model, prompt, want = sys.argv[1:5]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)

# Plain completion: the same text as the single-sequence path.
r = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16)
assert r.choices[0].text == want, (r.choices[0].text, want)
assert r.choices[0].finish_reason == "length", r.choices[0].finish_reason
assert r.usage.completion_tokens == 16, r.usage

# Streamed completion: the pieces join to the same text.
pieces = [c.choices[0].text for c in client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, stream=True) if c.choices]
assert "".join(pieces) == want, (pieces, want)

# Chat, whole and streamed (with the usage chunk), agree.
messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a colour."}]
whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_completion_tokens=12, seed=7)
assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant", whole
text = whole.choices[0].message.content
stream = client.chat.completions.create(model=model, messages=messages, temperature=0, max_completion_tokens=12, stream=True, stream_options={"include_usage": True})
chunks = list(stream)
assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
assert len({c.id for c in chunks}) == 1, "one id for all chunks"
joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert joined == text, (joined, text)
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens, chunks[-1]

# Logprobs through the client's typed objects: chat (content entries with alternatives)
# and completions (the legacy parallel lists); greedy takes each position's best.
r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_completion_tokens=8, logprobs=True, top_logprobs=2)
content = r.choices[0].logprobs.content
assert "".join(t.token for t in content) == r.choices[0].message.content, content
assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token and t.logprob <= 0 for t in content), content
r = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, logprobs=3)
lp = r.choices[0].logprobs
assert "".join(lp.tokens) == want and len(lp.token_logprobs) == 16, lp
assert all(abs(max(top.values()) - p) < 1e-6 for top, p in zip(lp.top_logprobs, lp.token_logprobs)), lp

# Under load: 12 requests at once through the async client (the server has 3 slots, so
# they queue, join running batches as slots free up and reuse each other's prefixes), half
# streamed; every one is the single-sequence text.
import asyncio


async def load():
    aclient = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)

    async def one(i):
        if i % 2:
            r = await aclient.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16)
            return r.choices[0].text
        chunks = await aclient.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, stream=True)
        return "".join([c.choices[0].text async for c in chunks if c.choices])

    return await asyncio.gather(*(one(i) for i in range(12)))


texts = asyncio.run(load())
assert texts == [want] * 12, texts

# The model list, and errors as the client's typed exceptions.
assert [m.id for m in client.models.list()] == [model]
try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise SystemExit("an unknown model was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.code == "model_not_found", e
try:
    client.chat.completions.create(model=model, messages=messages, n=3)
    raise SystemExit("n = 3 was accepted")
except openai.BadRequestError as e:
    assert e.param == "n", e
print("openai client: ok", openai.__version__)
