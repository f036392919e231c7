"""Feedback validation (pure): thumbs, numbers in the declared scale, comments, and errors naming the field."""

from __future__ import annotations

import pytest

from modelyard.rollouts.feedback import FeedbackError, FeedbackScale, parse_feedback

SCALE = FeedbackScale(1.0, 5.0)


@pytest.mark.parametrize(
    ("score", "scaled", "raw"),
    [("up", 1.0, "up"), ("down", 0.0, "down"), (1, 0.0, "1"), (5, 1.0, "5"), (3.5, 0.625, "3.5")],
)
def test_scores_are_scaled_to_zero_one(score: object, scaled: float, raw: str) -> None:
    given = parse_feedback({"request_id": " abc ", "score": score, "comment": "ok"}, SCALE)
    assert (given.request_id, given.score, given.raw, given.comment) == ("abc", scaled, raw, "ok")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"score": "up"}, "request_id", "required"),
        ({"request_id": "", "score": "up"}, "request_id", "required"),
        ({"request_id": "x" * 129, "score": "up"}, "request_id", "128"),
        ({"request_id": "a"}, "score", "required"),
        ({"request_id": "a", "score": "sideways"}, "score", "sideways"),
        ({"request_id": "a", "score": 0}, "score", "outside the declared range 1..5"),
        ({"request_id": "a", "score": float("nan")}, "score", "a number"),
        ({"request_id": "a", "score": False}, "score", "a number"),
        ({"request_id": "a", "score": [1]}, "score", "a number"),
        ({"request_id": "a", "score": "up", "comment": {"x": 1}}, "comment", "string"),
        ({"request_id": "a", "score": "up", "comment": "x" * 4001}, "comment", "4000"),
        ({"request_id": "a", "score": "up", "stars": 3}, "stars", "Unknown field"),
    ],
)
def test_bad_feedback_names_the_field(body: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(FeedbackError, match=words) as caught:
        parse_feedback(body, SCALE)
    assert caught.value.field == field
