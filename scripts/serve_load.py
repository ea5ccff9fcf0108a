"""A load on an OpenAI-compatible server through the real `openai` client (AsyncOpenAI):
REQUESTS streamed chat completions, CONCURRENCY at a time, each a different question after
one shared system prompt, greedy, MAX_TOKENS at most. Prints one JSON line: wall seconds,
prompt and completion tokens (the usage chunk), requests/s, generated tokens/s, and the
median and p90 of time to first token and of time per output token (per request: from
its first content chunk to its last, over its tokens after the first).

  python scripts/serve_load.py BASE_URL [--requests 16] [--concurrency 4] [--max-tokens 64]
"""

import argparse
import asyncio
import json
import statistics
import time

import openai

SYSTEM = "You are a helpful assistant. Answer in a few plain sentences."
TOPICS = ["the moon", "bread", "rivers", "volcanoes", "bees", "glass", "trains", "clouds", "chess", "salt", "owls", "copper", "tides", "maps", "paper", "wind"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


async def one(client, model, i, max_tokens, out):
    t0 = time.perf_counter()
    first = last = None
    usage = None
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]} (question {i})."}],
        temperature=0,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = 0
    async for c in stream:
        if c.choices and c.choices[0].delta.content:
            now = time.perf_counter()
            first = first or now
            last = now
            pieces += 1
        if c.usage:
            usage = c.usage
    # Without a usage chunk, a content chunk per token (what both servers send).
    n = usage.completion_tokens if usage else pieces
    out.append({"ttft": first - t0, "tpot": (last - first) / (n - 1) if n > 1 else None, "prompt": usage.prompt_tokens if usage else 0, "completion": n})


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    client = openai.AsyncOpenAI(base_url=a.base + "/v1", api_key="unused", max_retries=0, timeout=600)
    model = (await client.models.list()).data[0].id
    out = []
    sem = asyncio.Semaphore(a.concurrency)

    async def guarded(i):
        async with sem:
            await one(client, model, i, a.max_tokens, out)

    t0 = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(a.requests)))
    wall = time.perf_counter() - t0
    gen = sum(r["completion"] for r in out)
    tpot = [r["tpot"] for r in out if r["tpot"] is not None]
    print(json.dumps({
        "wall_s": wall,
        "requests": len(out),
        "prompt_tokens": sum(r["prompt"] for r in out),
        "completion_tokens": gen,
        "requests_per_s": len(out) / wall,
        "generated_tokens_per_s": gen / wall,
        "ttft_median_s": statistics.median(r["ttft"] for r in out),
        "ttft_p90_s": pct([r["ttft"] for r in out], 0.9),
        "tpot_median_s": statistics.median(tpot) if tpot else None,
        "tpot_p90_s": pct(tpot, 0.9),
    }))


asyncio.run(main())
