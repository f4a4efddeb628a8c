"""`gpt serve` through the official `openai` client (tests/serve_clients.rs runs it).

One argument, a JSON object:
  {"base_url": "http://127.0.0.1:PORT/v1", "api_key": KEY or null,
   "completion": {"prompt": P, "max_tokens": N} or null,
   "chat": [[message, …], …] or null}   (each a conversation whose last message is the user's)
Prints one JSON object: what the client got back, for the Rust test to compare with
`gpt sample` and `gpt chat`. Every request is greedy (temperature=0).
"""

import faulthandler
import json
import sys

import openai

# Never hang a test: a traceback and exit after this long.
faulthandler.dump_traceback_later(120, exit=True)


def error_of(call):
    """The client's exception type, status and message for a request that must fail."""
    try:
        call()
    except openai.APIStatusError as e:
        return {"type": type(e).__name__, "status": e.status_code, "message": e.message}
    return None


def main():
    spec = json.loads(sys.argv[1])
    # The key the server wants, or any (the client insists on one; the server ignores it).
    client = openai.OpenAI(
        base_url=spec["base_url"], api_key=spec["api_key"] or "unused", timeout=60, max_retries=0
    )
    out = {"version": openai.__version__}
    models = client.models.list()
    out["models"] = [m.id for m in models.data]
    model = models.data[0].id

    if spec["completion"]:
        prompt = spec["completion"]["prompt"]
        max_tokens = spec["completion"]["max_tokens"]
        whole = client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=0
        )
        out["completion"] = {
            "object": whole.object,
            "text": whole.choices[0].text,
            "finish_reason": whole.choices[0].finish_reason,
            "usage": whole.usage.model_dump(include={"prompt_tokens", "completion_tokens"}),
        }
        pieces, reasons = [], []
        for chunk in client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True
        ):
            for choice in chunk.choices:
                pieces.append(choice.text)
                reasons.append(choice.finish_reason)
        out["completion_stream"] = {
            "text": "".join(pieces),
            "chunks": len(pieces),
            "finish_reason": reasons[-1] if reasons else None,
        }
        out["errors"] = {
            "max_tokens": error_of(
                lambda: client.completions.create(model=model, prompt=prompt, max_tokens=-1)
            ),
            "model": error_of(
                lambda: client.completions.create(model="gpt-4o", prompt=prompt, max_tokens=1)
            ),
        }

    if spec["chat"]:
        out["chat"], out["chat_stream"] = [], []
        for messages in spec["chat"]:
            whole = client.chat.completions.create(model=model, messages=messages, temperature=0)
            out["chat"].append({
                "object": whole.object,
                "role": whole.choices[0].message.role,
                "content": whole.choices[0].message.content,
                "finish_reason": whole.choices[0].finish_reason,
            })
            pieces, roles, reasons, usage = [], [], [], None
            for chunk in client.chat.completions.create(
                model=model,
                messages=messages,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            ):
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump(include={"prompt_tokens", "completion_tokens"})
                for choice in chunk.choices:
                    if choice.delta.role:
                        roles.append(choice.delta.role)
                    if choice.delta.content:
                        pieces.append(choice.delta.content)
                    if choice.finish_reason:
                        reasons.append(choice.finish_reason)
            out["chat_stream"].append({
                "content": "".join(pieces),
                "chunks": len(pieces),
                "roles": roles,
                "finish_reasons": reasons,
                "usage": usage,
            })
        out.setdefault("errors", {})["chat_max_tokens"] = error_of(
            lambda: client.chat.completions.create(
                model=model, messages=spec["chat"][0], max_tokens=-1
            )
        )

    if spec["api_key"]:
        wrong = openai.OpenAI(
            base_url=spec["base_url"], api_key="not-" + spec["api_key"], timeout=60, max_retries=0
        )
        out.setdefault("errors", {})["wrong_key"] = error_of(lambda: wrong.models.list())

    print(json.dumps(out))


if __name__ == "__main__":
    main()
