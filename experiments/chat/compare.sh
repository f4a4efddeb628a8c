#!/usr/bin/env bash
# "Pretraining, then finetuning", asked of chat: the loss on the assistant's tokens of
# held-out conversations after SFT (experiments/chat.toml) from the Tiny Shakespeare base
# (experiments/chat_base.toml) versus SFT from scratch, same conversations, same budget,
# seeds 1337, 1 and 2; then the same few messages answered greedily by one run of each.
#
#   cargo build -p cli && experiments/chat/compare.sh         # from the repo root
#   GPT=path/to/gpt SEEDS="1337" experiments/chat/compare.sh   # another binary, one seed
#
# Both arms train and are scored on one file, data/chatterbot_shakespeare.jsonl, written
# from data/chatterbot.jsonl:
# - only conversations whose every character is in Tiny Shakespeare's vocabulary (a run
#   finetuned from the base would leave the others out, one from scratch would not);
# - each conversation once: the corpus repeats some ("tech support" is ten conversations
#   written ~100 times each), and as copies share a split, one repeated conversation
#   held out would weigh 100 times in the val loss, and one in train is memorised;
# - plus one last line using the vocabulary's characters that the conversations do not
#   ('$', '3', '\n'), so that a run from scratch builds the base's tokenizer: the val split
#   is chosen by a hash of each conversation's token ids, so the two arms hold out the same
#   conversations only with the same ids. (That line lands in train.)
# Runs go under runs/ and data under data/, which git ignores. An existing run is kept
# (delete it to redo it); a half-finished one stops the script (finish it with --resume).
set -euo pipefail

GPT=${GPT:-target/debug/gpt}
SEEDS=${SEEDS:-1337 1 2}
CORPUS=data/chatterbot.jsonl
DATA=data/chatterbot_shakespeare.jsonl
BASE=runs/chat_base
OUT=runs/chat-compare

# (a) The conversations, converted once (pip fetches the corpus from PyPI).
[[ -f $CORPUS ]] || python3 experiments/chat/chatterbot.py --out "$CORPUS"

# (b) The base, pretrained once on Tiny Shakespeare (which gpt finds or downloads).
if [[ -f $BASE/model.mpk ]]; then
    echo "base: $BASE exists, kept"
else
    "$GPT" train --config experiments/chat_base.toml --out-dir "$BASE" --sample-tokens 0
fi

# (c) The filtered file. Tiny Shakespeare is where gpt looks for it.
TEXT=${BURNGPT_DATA_DIR:-${BURNGPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/burngpt}}/tinyshakespeare/input.txt
python3 - "$TEXT" "$CORPUS" "$DATA" <<'EOF'
import json, sys
text, corpus, out = sys.argv[1:]
vocab = set(open(text, encoding="utf-8").read())
kept, seen, used = [], set(), set()
lines = open(corpus, encoding="utf-8").read().splitlines()
for line in lines:
    messages = json.loads(line)["messages"]
    chars = set("".join(m["content"] for m in messages))
    key = json.dumps(messages)
    if chars <= vocab and key not in seen:
        seen.add(key)
        used |= chars
        kept.append(line)
rest = "".join(sorted(vocab - used))
kept.append(json.dumps({"messages": [{"role": "user", "content": "Which characters?"},
                                     {"role": "assistant", "content": rest}],
                        "category": "vocabulary"}))
open(out, "w", encoding="utf-8").write("\n".join(kept) + "\n")
print(f"{out}: {len(kept) - 1} of {len(lines)} conversations (in the vocabulary, each once)"
      f" + 1 holding {rest!r}")
EOF

# (d) SFT from the base and from scratch, one run per arm and seed.
train() { # arm seed [flags…]
    local dir=$OUT/$1-$2
    if [[ -f $dir/model.mpk ]]; then echo "$dir exists, kept"; return; fi
    echo "training $dir"
    "$GPT" train --config experiments/chat.toml --data "$DATA" --out-dir "$dir" \
        --set seed="$2" --sample-tokens 0 "${@:3}" | grep -v '^iter [0-9]*/'
}
for seed in $SEEDS; do
    train base "$seed" --init-from "$BASE"
    train scratch "$seed"
done

# (e) The whole val split's loss on the assistant's tokens, per arm and seed.
echo
echo "val loss on the assistant's tokens (gpt eval --full), training time:"
for seed in $SEEDS; do
    for arm in base scratch; do
        dir=$OUT/$arm-$seed
        echo "$arm $seed $("$GPT" eval --run "$dir" --full --json) $(tail -1 "$dir/metrics.csv")"
    done
done | python3 -c '
import json, statistics, sys
rows = {}
for line in sys.stdin:
    arm, seed, js, csv = line.split(" ", 3)
    e = json.loads(js)
    rows.setdefault(arm, []).append((seed, e["full_val_loss"], e["full_val_tokens"],
                                     float(csv.split(",")[7])))
print("%-8s %5s %9s %7s %8s" % ("arm", "seed", "val loss", "tokens", "train s"))
for arm, runs in rows.items():
    for seed, loss, n, s in runs:
        print("%-8s %5s %9.4f %7d %8.1f" % (arm, seed, loss, n, s))
for arm, runs in rows.items():
    losses = [r[1] for r in runs]
    sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
    print("%-8s %5s %9.4f (sd %.4f over %d seeds)" % (arm, "mean", statistics.mean(losses), sd, len(losses)))
'

# (f) The same messages, greedy, to the first seed's run of each arm.
seed=${SEEDS%% *}
for arm in base scratch; do
    echo
    echo "--- $arm, seed $seed (gpt chat --top-k 1) ---"
    for message in "Hello" "What is your name?" "Tell me a joke" "Do you like music?"; do
        echo "> $message"
        "$GPT" chat --run "$OUT/$arm-$seed" --top-k 1 --max-new-tokens 200 --message "$message"
    done
    echo "> Hi, how are you?  > What do you like to do?"
    "$GPT" chat --run "$OUT/$arm-$seed" --top-k 1 --max-new-tokens 200 \
        --message "Hi, how are you?" --message "What do you like to do?"
done
