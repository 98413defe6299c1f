"""The card of a structured answer (issue 18): fields as far as they came, the prose field left
out, the model's values shown as typed."""

from __future__ import annotations

from modelriver import AIResponse
from modelriver.partial import parse_partial
from streamlit_modelriver._render import card_markdown, display_text

DATA = {"reply": "Hello.", "summary": "a *greeting*", "sentiment": "positive", "confidence": 0.9,
        "topics": ["hi", ":red[x]"], "action_items": [{"task": "wave [back](http://x)", "priority": "low"}],
        "extra": {"k": 1}}


def test_the_final_card_has_every_field_but_the_reply_escaped() -> None:
    card = card_markdown(DATA)
    assert "Hello." not in card
    assert "**Summary:** a \\*greeting\\*" in card
    assert "**Sentiment:** positive · confidence 90%" in card
    assert "**Topics:** hi, \\:red\\[x\\]" in card
    assert "• wave \\[back\\]\\(http\\:\\/\\/x\\) (low)" in card
    assert "**extra:** \\{\\\"k\\\"\\: 1\\}" in card


def test_prefixes_fill_the_card_field_by_field_and_never_shrink_a_field() -> None:
    import json

    text = json.dumps(DATA)
    seen: list[str] = []
    for end in range(len(text) + 1):
        card = card_markdown(parse_partial(text[:end]))
        assert '"reply"' not in card and "Hello" not in card
        seen.append(card)
    assert seen[0] == "" and seen[-1] == card_markdown(DATA)
    firsts = [next(i for i, c in enumerate(seen) if marker in c)
              for marker in ("**Summary:**", "**Sentiment:**", "**Topics:**", "**Action items:**")]
    assert firsts == sorted(firsts) and firsts[-1] < len(seen) - 1


def test_no_card_for_text_or_nothing() -> None:
    assert card_markdown(None) == "" and card_markdown("plain") == "" and card_markdown({"reply": "x"}) == ""
    assert card_markdown({"answer": "x", "city": "Paris"}, prose="answer") == "**city:** Paris"


def test_the_final_text_is_the_prose_field_never_the_json() -> None:
    def final(data: dict[str, object]) -> AIResponse:
        import json

        return AIResponse.from_payload({"status": "success", "content": json.dumps(data), "data": data})

    assert display_text(final(DATA), "") == "Hello."
    assert display_text(final({"answer": "Yes.", "city": "Paris"}), "") == "Yes."
    assert display_text(final({"name": "Ada", "city": "London"}), "") == ""  # the card shows it
    assert display_text(AIResponse.from_payload({"status": "success", "content": "plain"}), "x") == "plain"
