"""The pretraining corpus.

`synthetic_reviews(n, seed)` writes short English film and product reviews from a small grammar:
aspects (acting, plot, battery, ...), sentiment words of both signs and neutral ones, intensifiers,
negation ("not bad", "never boring"), contrast ("... but ..."), and sentiment that is mixed inside a
review as well as across reviews. The point is that a model's continuation of "the acting was" can
honestly go either way, so there is something for a reward model to prefer and for PPO to push.

Everything is generated here from word lists written for this project: no text is copied.
Users can bring their own text file (`load_text_file`) or, when online, a Hugging Face dataset
(`load_hf_dataset`).
"""

from __future__ import annotations

import os
import random
from functools import lru_cache

# ----------------------------------------------------------------------------- word lists

FILM_ASPECTS = [
    "acting", "plot", "music", "soundtrack", "dialogue", "ending", "pacing", "script", "direction",
    "cinematography", "cast", "story", "humor", "editing", "costumes", "lighting", "score",
    "villain", "hero", "twist", "opening", "finale", "camera work", "special effects", "set design",
    "lead actor", "lead actress", "supporting cast", "final act", "first half", "second half",
    "romance", "action scenes", "fight scenes", "jokes", "characters", "writing", "premise",
]
PRODUCT_ASPECTS = [
    "battery", "screen", "build quality", "price", "design", "sound", "camera", "keyboard",
    "speaker", "charger", "manual", "packaging", "display", "handle", "lid", "motor", "fabric",
    "zipper", "strap", "app", "setup", "delivery", "customer service", "warranty", "buttons",
    "finish", "weight", "grip", "blade", "cable", "remote", "fan", "filter", "lens", "case",
]
FILMS = ["film", "movie", "picture", "sequel", "thriller", "comedy", "drama", "documentary",
         "musical", "western", "cartoon", "horror film", "mystery", "romance", "war film", "remake",
         "series", "show", "miniseries", "adventure", "biopic"]
PRODUCTS = ["phone", "laptop", "blender", "kettle", "vacuum", "headset", "toaster", "backpack",
            "lamp", "watch", "tablet", "printer", "drill", "jacket", "chair", "mattress", "router",
            "camera", "speaker", "heater", "mixer", "stroller", "monitor", "tent", "bicycle",
            "coffee maker", "rice cooker", "hair dryer", "suitcase", "umbrella", "grill", "mouse"]

POSITIVE = [
    "good", "great", "excellent", "wonderful", "brilliant", "superb", "lovely", "beautiful",
    "charming", "delightful", "fantastic", "amazing", "outstanding", "solid", "impressive", "fun",
    "moving", "gripping", "clever", "fresh", "elegant", "stunning", "memorable", "smart", "warm",
    "funny", "sharp", "sturdy", "reliable", "fast", "quiet", "comfortable", "perfect", "pleasant",
    "satisfying", "inspiring", "touching", "thrilling", "powerful", "polished", "nice", "terrific",
    "enjoyable", "engaging", "gorgeous", "rich", "heartfelt", "tight", "vivid", "crisp", "sleek",
    "handy", "durable", "generous", "clean", "bright", "graceful", "witty", "honest", "tender",
]
NEGATIVE = [
    "bad", "terrible", "awful", "boring", "dull", "weak", "poor", "horrible", "dreadful", "messy",
    "clumsy", "bland", "tedious", "painful", "forgettable", "lazy", "cheap", "flimsy", "noisy",
    "slow", "ugly", "annoying", "confusing", "disappointing", "predictable", "shallow", "stiff",
    "silly", "sloppy", "flat", "broken", "useless", "fragile", "clunky", "overpriced", "awkward",
    "lifeless", "pointless", "irritating", "wooden", "hollow", "muddy", "harsh", "stale", "tiresome",
    "frustrating", "unbearable", "grim", "dreary", "sluggish", "sad", "mediocre", "cold", "thin",
    "wobbly", "leaky", "dim", "gross", "nasty", "dismal",
]
NEUTRAL = [
    "long", "short", "simple", "quiet", "loud", "familiar", "unusual", "ordinary", "dark", "light",
    "heavy", "small", "large", "modern", "old fashioned", "basic", "standard", "typical", "busy",
    "plain", "different", "serious", "gentle", "strange", "calm", "classic", "traditional", "steady",
    "odd", "subtle", "minimal", "slow burning", "straightforward", "compact", "tall", "wide", "new",
]
INTENSIFIERS = ["very", "really", "incredibly", "extremely", "truly", "quite", "so", "remarkably",
                "genuinely", "absolutely", "rather", "fairly", "pretty", "surprisingly", "deeply",
                "utterly", "totally", "a bit", "slightly", "somewhat"]
NEGATIONS = ["not", "never", "hardly", "not at all", "by no means", "far from"]
CONTRASTS = ["but", "yet", "although", "though", "however", "even so", "still", "on the other hand"]
ADDITIONS = ["and", "and also", "plus", "while", "as well as", "and even", "and honestly"]
OPENERS = [
    "i watched this {item} last weekend", "we saw this {item} with friends", "i bought this {item} for my kitchen",
    "my sister gave me this {item}", "i finally tried the {item}", "after a month with this {item}",
    "i went in with low hopes for this {item}", "i had high hopes for this {item}",
    "this {item} arrived on monday", "i rented this {item} on a rainy night", "i used this {item} every day",
    "my kids picked this {item}", "i ordered the {item} online", "our family watched the {item} on sunday",
    "the {item} came highly recommended", "a friend lent me this {item}", "i caught this {item} at the cinema",
    "this is my second {item} from them", "i replaced my old {item} with this one",
]
VERDICTS_POS = ["i would recommend it", "worth every penny", "i loved it", "a real gem", "highly recommended",
                "i will buy it again", "i would watch it again", "five stars from me", "go see it",
                "a pleasure from start to finish", "it made my day", "i am glad i got it"]
VERDICTS_NEG = ["i would not recommend it", "a waste of money", "i hated it", "avoid it", "skip this one",
                "i returned it", "i want my time back", "one star from me", "never again",
                "a chore from start to finish", "it ruined my evening", "i regret buying it"]
VERDICTS_MID = ["it was fine i guess", "it is okay for the price", "some will like it", "it was alright",
                "nothing special", "it does the job", "a mixed bag", "worth a look if you are bored",
                "three stars from me", "it could be better"]
DETAILS = [
    "the {aspect} reminded me of {thing}", "the {aspect} lasted about {num} {unit}",
    "i noticed the {aspect} after {num} {unit}", "the {aspect} changed halfway through",
    "everyone talked about the {aspect}", "the {aspect} took {num} {unit} to get used to",
]
THINGS = ["an old song", "my first car", "a summer holiday", "a school play", "a busy train station",
          "a quiet library", "a family dinner", "a birthday party", "an empty beach", "a late night diner",
          "a mountain cabin", "a city at night", "a radio drama", "a fairy tale", "a newspaper story"]
NUMBERS = ["two", "three", "four", "five", "ten", "twenty", "a few", "several"]
UNITS = ["minutes", "hours", "days", "weeks", "scenes", "chapters", "uses", "tries"]
NOUN_VERBS_POS = ["shines", "works", "delivers", "holds up", "stands out", "impresses", "sings", "flows"]
NOUN_VERBS_NEG = ["drags", "fails", "falls apart", "breaks", "disappoints", "stalls", "fades", "stumbles"]
WAS = ["was", "is", "felt", "seemed", "looked", "sounded", "turned out", "came across as"]
WERE = ["were", "are", "felt", "seemed", "looked", "sounded", "turned out", "came across as"]
PEOPLE = ["brother", "sister", "husband", "wife", "grandmother", "grandfather", "neighbour", "roommate",
          "colleague", "boss", "daughter", "son", "cousin", "uncle", "aunt", "nephew", "niece", "partner",
          "students", "teacher", "parents", "best friend", "girlfriend", "boyfriend", "team", "dog"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "holiday"]
TIMES = ["morning", "afternoon", "evening", "night", "weekend", "break", "flight", "commute"]
CONTEXTS = [
    "i watched it with my {person} on a {day} {time}", "my {person} tried it on a {day} {time}",
    "i used it during my {time} on {day}", "my {person} thinks so too", "my {person} disagrees with me",
    "compared to the last one from this {maker}, it is {comparison}", "i paid {price} for it",
    "it took {num} {unit} to arrive", "the {maker} should read these reviews", "i read the reviews before buying",
    "the trailer promised more", "the box said it was waterproof", "my {person} fell asleep halfway",
    "we laughed out loud twice", "the whole room went silent", "the instructions were in tiny print",
    "the neighbours complained about the volume", "the colour faded after one wash", "it fits in a pocket",
    "the cinema was almost empty", "the sequel is coming next year", "the reviews online seem paid",
]
MAKERS = ["studio", "brand", "company", "director", "shop", "seller", "author", "factory", "team"]
COMPARISONS = ["better", "worse", "about the same", "cheaper", "louder", "lighter", "longer", "shorter",
               "heavier", "smoother", "rougher", "quicker", "slower"]
PRICES = ["twenty dollars", "fifty dollars", "a hundred dollars", "too much", "very little", "half price",
          "full price", "a small fortune", "next to nothing"]
PLURAL_ASPECTS = {"characters", "jokes", "action scenes", "fight scenes", "special effects", "costumes",
                  "buttons", "supporting cast"}


def _adjective(rng: random.Random, sign: int) -> tuple[str, int]:
    """An adjective phrase and its *effective* sign after optional negation and intensifiers.

    sign: +1 positive, -1 negative, 0 neutral. Negation flips the word's sign ("not bad" is mildly
    positive), which is exactly what a bag-of-words reader gets wrong and what VADER handles.
    """
    if sign == 0:
        word = rng.choice(NEUTRAL)
        if rng.random() < 0.3:
            word = f"{rng.choice(INTENSIFIERS)} {word}"
        return word, 0
    pool = POSITIVE if sign > 0 else NEGATIVE
    if rng.random() < 0.18:
        # negated opposite: "not bad" / "never boring" carries the requested sign
        other = NEGATIVE if sign > 0 else POSITIVE
        return f"{rng.choice(NEGATIONS)} {rng.choice(other)}", sign
    word = rng.choice(pool)
    r = rng.random()
    if r < 0.35:
        word = f"{rng.choice(INTENSIFIERS)} {word}"
    elif r < 0.45:
        word = f"{word} and {rng.choice(pool)}"
    return word, sign


def _clause(rng: random.Random, aspects: list[str], sign: int) -> str:
    aspect = rng.choice(aspects)
    r = rng.random()
    if r < 0.6:
        adj, _ = _adjective(rng, sign)
        copula = rng.choice(WERE if aspect in PLURAL_ASPECTS else WAS)
        return f"the {aspect} {copula} {adj}"
    if r < 0.8 and sign != 0:
        verb = rng.choice(NOUN_VERBS_POS if sign > 0 else NOUN_VERBS_NEG)
        if aspect in PLURAL_ASPECTS:  # "the jokes fall flat", not "the jokes falls flat"
            verb = verb.replace("es ", " ").replace("s ", " ") if " " in verb else verb[:-1]
        return f"the {aspect} {verb}"
    if r < 0.9:
        adj, _ = _adjective(rng, sign)
        return f"{adj} {aspect}"
    return rng.choice(DETAILS).format(aspect=aspect, thing=rng.choice(THINGS), num=rng.choice(NUMBERS),
                                      unit=rng.choice(UNITS))


def _review(rng: random.Random) -> str:
    is_film = rng.random() < 0.6
    item = rng.choice(FILMS if is_film else PRODUCTS)
    aspects = FILM_ASPECTS if is_film else PRODUCT_ASPECTS
    # Overall tone of the review; individual clauses may disagree with it (mixed sentiment).
    tone = rng.choices([1, -1, 0], weights=[0.42, 0.42, 0.16])[0]

    def clause_sign() -> int:
        if tone == 0:
            return rng.choice([1, -1, 0])
        return tone if rng.random() < 0.72 else rng.choice([-tone, 0])

    parts: list[str] = []
    if rng.random() < 0.45:
        parts.append(rng.choice(OPENERS).format(item=item) + ".")
    n_clauses = rng.choices([1, 2, 3, 4], weights=[0.3, 0.35, 0.25, 0.1])[0]
    for _ in range(n_clauses):
        s1 = clause_sign()
        first = _clause(rng, aspects, s1)
        r = rng.random()
        if r < 0.35:
            # contrast: the second half leans the other way
            s2 = -s1 if s1 != 0 else rng.choice([1, -1])
            parts.append(f"{first}, {rng.choice(CONTRASTS)} {_clause(rng, aspects, s2)}.")
        elif r < 0.55:
            parts.append(f"{first} {rng.choice(ADDITIONS)} {_clause(rng, aspects, s1)}.")
        else:
            parts.append(f"{first}.")
    if rng.random() < 0.3:
        parts.insert(rng.randint(0, len(parts)), rng.choice(CONTEXTS).format(
            person=rng.choice(PEOPLE), day=rng.choice(DAYS), time=rng.choice(TIMES), maker=rng.choice(MAKERS),
            comparison=rng.choice(COMPARISONS), price=rng.choice(PRICES), num=rng.choice(NUMBERS),
            unit=rng.choice(UNITS)) + ".")
    if rng.random() < 0.55:
        verdict = {1: VERDICTS_POS, -1: VERDICTS_NEG, 0: VERDICTS_MID}[tone]
        parts.append(rng.choice(verdict) + ".")
    if rng.random() < 0.2:
        parts.insert(0, f"this {item}.")
    # Keep every document inside the small context: drop whole sentences, never cut one in half.
    while len(parts) > 1 and len(" ".join(parts).split()) > 40:
        parts.pop(rng.randrange(len(parts)))
    text = " ".join(parts)
    if len(text.split()) > 40:
        text = " ".join(text.split()[:39]).rstrip(",") + "."
    while len(text.split()) < 6:  # the shortest reviews still say something about the item
        text = f"{text} {_clause(rng, aspects, clause_sign())}."
    return text


def synthetic_reviews(n: int, seed: int = 0) -> list[str]:
    """`n` deterministic synthetic reviews (same `n` and `seed` -> the same list)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [_review(rng) for _ in range(n)]


@lru_cache(maxsize=4)
def default_corpus(n: int = 20000, seed: int = 0) -> tuple[str, ...]:
    """The shipped models' corpus (cached: the annotator's fluency model reads it too)."""
    return tuple(synthetic_reviews(n, seed))


# ----------------------------------------------------------------------------- user text files

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_LINE_CHARS = 2000
MIN_DOCUMENTS = 10


class CorpusError(ValueError):
    """A corpus the lab cannot train on; the message says why and what would work."""


def parse_text(data: bytes, name: str = "file", max_bytes: int = MAX_FILE_BYTES,
               max_line_chars: int = MAX_LINE_CHARS) -> list[str]:
    """Documents (one a line) from raw bytes of an uploaded or local file, after checks."""
    if len(data) > max_bytes:
        raise CorpusError(f"{name} is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:g} MiB")
    if b"\x00" in data[:65536]:
        raise CorpusError(f"{name} looks binary (it contains NUL bytes); expected UTF-8 text, one document a line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{name} is not UTF-8 text (byte {e.start}: {e.reason})") from e
    docs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = " ".join(line.split())
        if not line:
            continue
        if len(line) > max_line_chars:
            raise CorpusError(f"{name}, line {number}: {len(line)} characters; the limit is {max_line_chars} "
                              "(one document a line)")
        docs.append(line)
    if len(docs) < MIN_DOCUMENTS:
        raise CorpusError(f"{name} holds {len(docs)} non-empty lines; at least {MIN_DOCUMENTS} documents are needed")
    return docs


def load_text_file(path: str | os.PathLike, **limits) -> list[str]:
    """Documents from a UTF-8 text file, one a line. Empty, binary or oversized files raise CorpusError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(f"corpus file {path!r} does not exist")
    size = os.path.getsize(path)
    max_bytes = limits.get("max_bytes", MAX_FILE_BYTES)
    if size > max_bytes:
        raise CorpusError(f"{path} is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:g} MiB")
    with open(path, "rb") as f:
        data = f.read()
    return parse_text(data, name=path, **limits)


def load_hf_dataset(dataset_or_name, split: str = "train", text_field: str = "text",
                    limit: int | None = None) -> list[str]:
    """Documents from a Hugging Face `datasets` Dataset (or a hub name, which needs internet).

    `datasets` is an optional dependency: the lab never needs it for its defaults.
    """
    if isinstance(dataset_or_name, str):
        try:
            import datasets
        except ImportError as e:
            raise CorpusError("loading a hub dataset needs the `datasets` package: pip install datasets") from e
        dataset = datasets.load_dataset(dataset_or_name, split=split)
    else:
        dataset = dataset_or_name
    if text_field not in dataset.column_names:
        raise CorpusError(f"dataset has no column {text_field!r}; columns are {dataset.column_names}")
    docs = []
    for row in dataset:
        text = " ".join(str(row[text_field]).split())
        if text:
            docs.append(text[:MAX_LINE_CHARS])
        if limit is not None and len(docs) >= limit:
            break
    if len(docs) < MIN_DOCUMENTS:
        raise CorpusError(f"dataset holds {len(docs)} non-empty texts; at least {MIN_DOCUMENTS} are needed")
    return docs


def vocabulary(docs) -> set[str]:
    words = set()
    for d in docs:
        words.update(w.strip(".,!?;:") for w in d.split())
    words.discard("")
    return words
