import numpy as np

from spacy_elmo.bilm.chars import batch_to_char_ids, word_to_char_ids


def test_word_ids_have_markers_bytes_and_offset():
    ids = word_to_char_ids("aé")
    assert ids.tolist()[:5] == [259, 98, 0xC3 + 1, 0xA9 + 1, 260]
    assert (ids[5:] == 261).all() and ids.shape == (50,)


def test_sentence_markers_match_reference_patterns():
    assert word_to_char_ids("<S>").tolist()[:4] == [259, 257, 260, 261]
    assert word_to_char_ids("</S>").tolist()[:4] == [259, 258, 260, 261]


def test_long_words_are_cut_at_48_bytes_even_inside_a_character():
    ids = word_to_char_ids("a" + "é" * 30)  # 61 bytes
    assert ids[48] == 0xC3 + 1 and ids[49] == 260  # 48 bytes: the last is a lead byte


def test_unencodable_text_is_dropped_not_raised():
    assert word_to_char_ids("a\ud800b").tolist()[:4] == [259, 98, 99, 260]
    assert word_to_char_ids("").tolist()[:3] == [259, 260, 261]


def test_batch_pads_with_zero_tokens():
    ids = batch_to_char_ids([["a", "b"], [], ["c"]])
    assert ids.shape == (3, 2, 50)
    assert (ids[1] == 0).all() and (ids[2, 1] == 0).all() and (ids[2, 0] > 0).all()
    assert batch_to_char_ids([[], []]).shape == (2, 0, 50)
    np.testing.assert_array_equal(ids[0, 1].numpy(), word_to_char_ids("b"))
