"""The built-in text the tiny tokenizer is trained on: prompts and answers shaped like the tasks.

Deterministic (a seeded `random.Random`): grounding, detection, counting, classification, yes/no
and multiple-choice questions, `<think>`/`<answer>` completions, boxes as lists and JSON.
"""

from __future__ import annotations

import json
import random

_COLOURS = "red green blue yellow orange purple pink brown black white gray cyan magenta".split()
_SHAPES = "circle square rectangle triangle star ellipse diamond hexagon cross heart ring".split()
_OBJECTS = (
    "cat dog person man woman child car bus truck bird horse cup bottle chair table tree ball plane "
    "boat rocket coffee astronaut kitty bicycle phone book clock apple banana pizza sign door window "
    "motorcycle train bench elephant bear zebra giraffe umbrella handbag tie suitcase kite skateboard "
    "surfboard racket glass fork knife spoon bowl sandwich orange broccoli carrot cake couch bed toilet "
    "laptop mouse keyboard oven sink refrigerator vase scissors flower house road sky grass water cloud"
).split()
_ADJECTIVES = (
    "big small large tiny tall short left right top bottom upper lower middle centre center above below "
    "behind front near far next inside outside leftmost rightmost largest smallest bright dark striped"
).split()
_NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
_QUESTIONS = (
    "Find the {c} {s}.",
    "Locate the {c} {s} in the image.",
    "Where is the {c} {s}? Output its bounding box.",
    "Output the bounding box of the {c} {s} in the image.",
    "Please provide the bounding box coordinate of the region this sentence describes: the {c} {s}.",
    "Detect all {s}s in the image and output their bounding boxes and labels.",
    "How many {c} {s}s are there in the image?",
    "Count the number of {s}s in the picture.",
    "What kind of object is in the image?",
    "What is the colour of the {s}? Answer with one word.",
    "Is there a {c} {s} in the image? Answer yes or no.",
    "Which category does this {o} belong to?",
    "Classify the main object in the photo.",
    "Which option is correct? A. {c} B. {s} C. {o} D. none. Answer with the option's letter.",
    "Describe the {o} next to the {c} {s}.",
    "Find the {a} {c} {s} {p} the {o}.",
    "Give the box of the {a} {o}.",
    "Which {s} is {a}? Output its coordinates.",
    "Point out the {o} and report its bounding box in [x1, y1, x2, y2] format.",
    "Identify every object and give each a label.",
    "Is the {s} {p} the {o}? Answer yes or no.",
    "Select the correct answer. Options: (A) {c} (B) {o} (C) {s} (D) {n}.",
)
_THINK = (
    "The {c} {s} is near the {v} {h} of the image.",
    "I can see a {c} {s} and a {o}. The {s} is {c}.",
    "Let me look at the image carefully. There are {n} {s}s.",
    "The object looks like a {o}, so the answer is {o}.",
    "First I find the {s}, then I read its corners.",
    "The {a} {s} is {p} the {o}, so its box covers that region.",
    "Counting them one by one gives {n}.",
    "Red, green and blue shapes are visible; the {c} one is the target.",
    "None of the other options match, because the colour is {c}.",
)
_FORMAT = (
    " First output the thinking process in <think> </think> tags and then output the final answer "
    "in <answer> </answer> tags.",
    " Output the final answer in JSON format.",
    " Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
    "",
)


def _box(rng: random.Random, hi: int) -> list[int]:
    x1, y1 = rng.randrange(0, hi - 10), rng.randrange(0, hi - 10)
    return [x1, y1, rng.randrange(x1 + 5, hi + 1), rng.randrange(y1 + 5, hi + 1)]


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """Deterministic text in the shape of the tasks: prompts, reasoning, boxes, JSON, short answers."""
    rng = random.Random(seed)
    lines = ["You are a helpful assistant.", "system", "user", "assistant", "yes", "no", "Yes", "No"]
    lines += [" ".join(str(i) for i in range(0, 1001, 7)), " ".join(_NUMBER_WORDS), "A B C D", "A. B. C. D."]
    for _ in range(n):
        c, s, o = rng.choice(_COLOURS), rng.choice(_SHAPES), rng.choice(_OBJECTS)
        fill = {
            "c": c,
            "s": s,
            "o": o,
            "n": rng.choice(_NUMBER_WORDS[1:]),
            "v": rng.choice(["top", "bottom", "middle"]),
            "h": rng.choice(["left", "right", "centre"]),
            "a": rng.choice(_ADJECTIVES),
            "p": rng.choice(["next to", "above", "below", "left of", "right of", "near", "behind"]),
        }
        question = rng.choice(_QUESTIONS).format(**fill) + rng.choice(_FORMAT)
        box = _box(rng, rng.choice([112, 224, 448, 1000]))
        kind = rng.randrange(6)
        if kind == 0:
            answer = str(box)
        elif kind == 1:
            answer = '{"bbox_2d": %s, "label": "%s %s"}' % (box, c, s)
        elif kind == 2:
            labels = [f"{rng.choice(_COLOURS)} {s}" for _ in range(rng.randrange(4))]
            dets = [{"bbox_2d": _box(rng, 1000), "label": label} for label in labels]
            answer = "```json\n" + json.dumps(dets) + "\n```"
        elif kind == 3:
            answer = str(rng.randrange(13)) if rng.random() < 0.5 else rng.choice(_NUMBER_WORDS)
        elif kind == 4:
            answer = rng.choice(["yes", "no", "A", "B", "C", "D", o, c])
        else:
            answer = f"({box[0]},{box[1]}),({box[2]},{box[3]})"
        think = rng.choice(_THINK).format(**fill)
        lines.append(f"user\n{question}")
        if rng.random() < 0.7:
            lines.append(f"assistant\n<think>{think}</think><answer>{answer}</answer>")
        else:
            lines.append(f"assistant\n<think>\n{think}\n</think>\n<answer>\n{answer}\n</answer>")
    return lines
