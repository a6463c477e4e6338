"""Caption normalisation and the vocabulary."""

from __future__ import annotations

import pytest

from tvcaption.vocab import Vocab, normalize, tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A man is SINGING.", "a man is singing"),
        ("hello,world!!  again\t\n", "hello world again"),
        ("a man's t-shirt", "a man's t shirt"),
        ("\u201cDon\u2019t\u201d stop", "don't stop"),  # typographic quotes and apostrophe
        ("'quoted' words'", "quoted words"),
        ("Café crème, 2 men", "café crème 2 men"),
        ("ＦＵＬＬ width_text", "full width text"),
        ("", ""),
        ("?!", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_tokenize_splits_normalised_words():
    assert tokenize("A dog, a cat") == ["a", "dog", "a", "cat"]


def test_specials_have_fixed_ids():
    v = Vocab.build(["a b"])
    assert (v.PAD, v.BOS, v.EOS, v.UNK) == (0, 1, 2, 3)
    assert v.to_list()[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]


def test_build_orders_by_count_then_alphabetically():
    v = Vocab.build(["b a c", "c b", "c d", "e"])
    assert v.to_list()[4:] == ["c", "b", "a", "d", "e"]
    assert Vocab.build(["b a c", "c b", "c d", "e"], max_size=2).to_list()[4:] == ["c", "b"]
    assert Vocab.build(["b a c", "c b", "c d", "e"], min_count=2).to_list()[4:] == ["c", "b"]
    assert Vocab.build(["x y", "y x"]) == Vocab.build(["y x", "x y"])  # deterministic


def test_encode_cuts_at_max_words_and_marks_unknown():
    v = Vocab.build(["a man is singing"])
    assert v.encode("A man is dancing!") == [1, v.id("a"), v.id("man"), v.id("is"), 3, 2]
    long = " ".join(["man"] * 40)
    ids = v.encode(long)
    assert len(ids) == 32 and ids[0] == 1 and ids[-1] == 2
    assert len(v.encode(long, max_words=5)) == 7


def test_decode_stops_at_eos_and_skips_pad_and_bos():
    v = Vocab.build(["a man is singing"])
    ids = v.encode("a man is singing")
    assert v.decode(ids + [v.id("man"), 0, 0]) == "a man is singing"
    assert v.decode([v.id("man"), 3, 0]) == "man <unk>"
    assert v.decode([]) == ""


def test_list_round_trip_and_validation():
    v = Vocab.build(["a man is singing", "a woman"])
    assert Vocab.from_list(v.to_list()) == v and len(v) == 4 + 5
    with pytest.raises(ValueError, match="start with"):
        Vocab.from_list(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab.from_list(v.to_list() + ["a"])
    with pytest.raises(ValueError, match="normalised"):
        Vocab.from_list(v.to_list() + ["Two Words"])
