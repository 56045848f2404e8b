"""The synthetic world's text and images: item names, search queries and image features.

The vocabulary has three kinds of words, then a misspelt twin of each:

- generic words (``cheap``, ``new``, ``sale``, ...) any name or query may hold;
- each category's own words, Zipf-popular within the category;
- one word per brand.

An item's name is its brand's word, two words of its category and, sometimes, a generic word.
A search's query is written with the item the user goes on to look at in mind (the next item of
the session; a popular item of the session's focus when none follows): words of that item's
category and its brand, sometimes a generic word, with typos (a word's misspelt twin) and
unrelated words at small rates. An item's image features are its category's latent style plus
its brand's offset plus noise, so items of one category look alike and brands differ within it.
Token ids and vectors are stored once per item or query (``datasets.schema.TokenLists``), and
events refer to a query by row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.schema import MISSING_ID, EventType, TokenLists

GENERIC_WORD_SHARE = 0.15  # of a query's words, and the chance a name holds one
BRAND_WORD_SHARE = 0.35  # of a query's words
NAME_CATEGORY_WORDS = 2


@dataclass(frozen=True)
class Vocabulary:
    """Token id ranges: generic words, category words, brand words, then the twins."""

    generic: int
    per_category: int
    n_categories: int
    n_brands: int

    @property
    def base(self) -> int:
        """Words before their misspelt twins."""
        return self.generic + self.per_category * self.n_categories + self.n_brands

    @property
    def size(self) -> int:
        return 2 * self.base

    def category_word(self, category: np.ndarray, rank: np.ndarray) -> np.ndarray:
        return self.generic + category * self.per_category + rank

    def brand_word(self, brand: np.ndarray) -> np.ndarray:
        return self.generic + self.per_category * self.n_categories + brand

    def misspelt(self, token: np.ndarray) -> np.ndarray:
        return token + self.base


@dataclass(frozen=True)
class TextWorld:
    """What names and queries are written from: the words, and each item's category and brand."""

    vocab: Vocabulary
    word_weights: np.ndarray  # cumulative Zipf weights of a category's words
    item_category: np.ndarray  # (n_items,)
    item_brand: np.ndarray  # (n_items,)


def item_names(text: TextWorld, rng: np.random.Generator) -> TokenLists:
    """Each item's name: its brand's word, two words of its category, sometimes a generic one."""
    vocab, category, brand = text.vocab, text.item_category, text.item_brand
    n = len(category)
    ranks = _category_ranks(vocab, text.word_weights, (n, NAME_CATEGORY_WORDS), rng)
    words = vocab.category_word(category[:, None], ranks)
    generic = rng.integers(0, vocab.generic, n)
    has_generic = rng.random(n) < GENERIC_WORD_SHARE
    slots = np.column_stack([vocab.brand_word(brand), words, generic])
    keep = np.column_stack([np.ones((n, 1 + NAME_CATEGORY_WORDS), dtype=bool), has_generic])
    lengths = keep.sum(axis=1)
    return TokenLists(np.concatenate(([0], np.cumsum(lengths))), slots[keep], vocab.size)


def search_targets(
    event_type: np.ndarray,
    item: np.ndarray,
    session_of: np.ndarray,
    session_focus: np.ndarray,
    popular_item: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The search events' rows, and for each the item its query is written for: the item the
    user looks at next, or (nothing after it) the most popular item of the session's focus
    category (``popular_item``: one per category)."""
    searches = np.flatnonzero(event_type == EventType.SEARCH)
    intended = _next_item(item, session_of, searches)
    missing = intended < 0
    intended[missing] = popular_item[session_focus[session_of[searches[missing]]]]
    return searches, intended


def search_queries(
    text: TextWorld,
    n_events: int,
    searches: np.ndarray,
    intended: np.ndarray,
    typo_rate: float,
    noise_rate: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, TokenLists]:
    """(n_events,) each search's row in the queries (``MISSING_ID`` for other events), and the
    queries: one per search event (``searches``), written for its ``intended`` item."""
    vocab = text.vocab
    lengths = 1 + rng.binomial(3, 0.4, len(searches))
    owner = np.repeat(np.arange(len(searches)), lengths)
    target = intended[owner]
    kind = rng.random(len(owner))
    ranks = _category_ranks(vocab, text.word_weights, len(owner), rng)
    tokens = vocab.category_word(text.item_category[target], ranks)
    brand = kind < BRAND_WORD_SHARE
    tokens[brand] = vocab.brand_word(text.item_brand[target[brand]])
    generic = kind > 1.0 - GENERIC_WORD_SHARE
    tokens[generic] = rng.integers(0, vocab.generic, int(generic.sum()))
    typo = rng.random(len(owner)) < typo_rate
    tokens[typo] = vocab.misspelt(tokens[typo])
    noise = rng.random(len(owner)) < noise_rate
    tokens[noise] = rng.integers(0, vocab.base, int(noise.sum()))
    query = np.full(n_events, MISSING_ID, dtype=np.int64)
    query[searches] = np.arange(len(searches))
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    return query, TokenLists(offsets, tokens, vocab.size)


def image_features(
    category: np.ndarray, brand: np.ndarray, n_categories: int, dim: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_items, dim) float32: category style + brand offset + item noise."""
    style = rng.normal(0.0, 1.0, (n_categories, dim))
    offset = rng.normal(0.0, 0.5, (int(brand.max()) + 1 if len(brand) else 1, dim))
    noise = rng.normal(0.0, 0.5, (len(category), dim))
    return (style[category] + offset[brand] + noise).astype(np.float32)


def word_popularity(per_category: int, exponent: float = 1.0) -> np.ndarray:
    """Cumulative Zipf weights of a category's words (its first words are its common ones)."""
    w = np.arange(1, per_category + 1, dtype=np.float64) ** -exponent
    return np.cumsum(w / w.sum())


def _category_ranks(
    vocab: Vocabulary, cumulative: np.ndarray, shape, rng: np.random.Generator
) -> np.ndarray:
    ranks = np.searchsorted(cumulative, rng.random(shape), side="right")
    return np.minimum(ranks, vocab.per_category - 1)


def _next_item(item: np.ndarray, session_of: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the item of the next later event of its session that has one
    (``MISSING_ID`` when none does)."""
    with_item = np.flatnonzero(item >= 0)
    nxt = np.searchsorted(with_item, rows, side="right")
    found = nxt < len(with_item)
    at = with_item[np.minimum(nxt, max(len(with_item) - 1, 0))] if len(with_item) else rows
    same = found & (session_of[at] == session_of[rows]) if len(with_item) else found
    return np.where(same, item[at], MISSING_ID).astype(np.int64)
