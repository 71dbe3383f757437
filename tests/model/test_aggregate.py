import numpy as np

from instrumentd.model.aggregate import labels_from_scores, s2_scores


def test_s2_hand_computed():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    # sums 1.3, 1.1, 0.6 -> divided by 1.3
    np.testing.assert_allclose(s2_scores(probs), [1.0, 1.1 / 1.3, 0.6 / 1.3])
    assert labels_from_scores(s2_scores(probs), ("a", "b", "c")) == ["a", "b"]
    assert labels_from_scores(s2_scores(probs), ("a", "b", "c"), threshold=0.9) == ["a"]


def test_all_zero_windows():
    assert s2_scores(np.zeros((2, 3))).tolist() == [0, 0, 0]
