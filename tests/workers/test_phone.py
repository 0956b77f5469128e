"""The Open-AutoGLM answer parser on realistic answers, and the step prompt."""

from __future__ import annotations

from typing import Any

import pytest

from workers.phone import (
    NO_SCREENSHOT,
    SCREENSHOT_IGNORED,
    build_phone_messages,
    format_action,
    parse_phone_answer,
)

VALID: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "<think>The Settings icon is in the second row.</think>\n"
        '<answer>do(action="Tap", element=[512, 340])</answer>',
        "Tap",
        {"element": [512, 340]},
        "The Settings icon is in the second row.",
    ),
    (
        "<think>\nThe search box is focused.\n</think>\n<answer>\n"
        'do(action="Type", text="coffee near me")\n</answer>',
        "Type",
        {"text": "coffee near me"},
        "The search box is focused.",
    ),
    (
        '<think>Scroll the list.</think><answer>do(action="Swipe", start=[500, 800], '
        "end=[500, 200])</answer>",
        "Swipe",
        {"start": [500, 800], "end": [500, 200]},
        "Scroll the list.",
    ),
    (
        '<think>Open the menu.</think><answer>do(action="Long Press", element=[100,900])</answer>',
        "Long Press",
        {"element": [100, 900]},
        "Open the menu.",
    ),
    (
        '<answer>do(action="Double Tap", element=[300, 300])</answer>',
        "Double Tap",
        {"element": [300, 300]},
        "",
    ),
    (
        '<think>Messages is not open.</think><answer>do(action="Launch", app="Messages")</answer>',
        "Launch",
        {"app": "Messages"},
        "Messages is not open.",
    ),
    ('<think>Wrong page.</think><answer>do(action="Back")</answer>', "Back", {}, "Wrong page."),
    ('<answer>do(action="Home")</answer>', "Home", {}, ""),
    (
        '<think>Still loading.</think><answer>do(action="Wait", duration="2 seconds")</answer>',
        "Wait",
        {"duration": "2 seconds"},
        "Still loading.",
    ),
    (
        '<think>A login is required.</think><answer>do(action="Take_over", '
        'message="Please log in to continue")</answer>',
        "Take_over",
        {"message": "Please log in to continue"},
        "A login is required.",
    ),
    (
        '<answer>do(action="Tap", element=[820, 1000], message="Confirm the payment")</answer>',
        "Tap",
        {"element": [820, 1000], "message": "Confirm the payment"},
        "",
    ),
    # No tags: the thinking is whatever comes before the call.
    (
        'I should go back first. do(action="Back")',
        "Back",
        {},
        "I should go back first.",
    ),
    # An answer tag left open at the end of the generation.
    ('<think>t</think><answer>do(action="Home")', "Home", {}, "t"),
    # A code fence inside the answer.
    ('<answer>```python\ndo(action="Home")\n```</answer>', "Home", {}, ""),
    # Text with a raw newline and with unescaped quotes, as models write it.
    (
        '<answer>do(action="Type", text="line one\nline two")</answer>',
        "Type",
        {"text": "line one\nline two"},
        "",
    ),
    (
        '<answer>do(action="Type", text="He said "hello" twice")</answer>',
        "Type",
        {"text": 'He said "hello" twice'},
        "",
    ),
]


@pytest.mark.parametrize(("raw", "action", "args", "thinking"), VALID)
def test_valid_answers(raw: str, action: str, args: dict[str, Any], thinking: str) -> None:
    parsed = parse_phone_answer(raw)
    assert parsed["action"] == action, parsed
    assert parsed["args"] == args
    assert parsed["thinking"] == thinking
    assert parsed["raw"] == raw
    assert "error" not in parsed


def test_finish_carries_its_message() -> None:
    raw = (
        "<think>The alarm is set.</think>"
        '<answer>finish(message="Alarm set for 7:00 tomorrow.")</answer>'
    )
    parsed = parse_phone_answer(raw)
    assert parsed["action"] == "finish"
    assert parsed["message"] == "Alarm set for 7:00 tomorrow."
    assert parsed["args"] == {"message": "Alarm set for 7:00 tomorrow."}
    assert parsed["thinking"] == "The alarm is set."


MALFORMED = [
    "",
    "I think the next step is to tap the blue button.",
    "<think>hmm</think><answer></answer>",
    '<answer>do(action="Fly", element=[1, 2])</answer>',  # unknown action
    '<answer>do(action="Tap")</answer>',  # missing element
    '<answer>do(action="Tap", element=[500])</answer>',  # not a point
    '<answer>do(action="Tap", element=[x, y])</answer>',  # placeholders, not literals
    '<answer>do(action="Tap", element=[500, 1500])</answer>',  # off screen
    '<answer>do(action="Tap", element=[-5, 10])</answer>',
    '<answer>do(action="Tap", element=[True, 10])</answer>',
    '<answer>do(action="Swipe", start=[1, 2])</answer>',  # missing end
    '<answer>do(action="Back", element=[1, 2])</answer>',  # unexpected argument
    '<answer>do(action="Type", text=123)</answer>',
    '<answer>do("Tap", element=[1, 2])</answer>',  # positional
    '<answer>do(action="Tap", element=[1, 2]</answer>',  # unbalanced
    '<answer>do(action="Back")\ndo(action="Home")</answer>',  # two actions
    "<answer>finish()</answer>",
    "<answer>finish(message=42)</answer>",
    "<answer>__import__('os').system('rm -rf /')</answer>",
    '<answer>os.system("ls")</answer>',
    '<answer>do(action="Tap", element=open("/etc/passwd"))</answer>',
    '<answer>do(**{"action": "Back"})</answer>',
    "<answer>tap(100, 200)</answer>",
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_answers_are_reported_not_guessed(raw: str) -> None:
    parsed = parse_phone_answer(raw)
    assert parsed["action"] is None, parsed
    assert parsed["args"] == {}
    assert parsed["error"]["code"] == "malformed_answer"
    assert parsed["error"]["message"]
    assert parsed["raw"] == raw


def test_format_action_round_trips() -> None:
    for raw, *_ in VALID:
        parsed = parse_phone_answer(raw)
        again = parse_phone_answer(f"<answer>{format_action(parsed)}</answer>")
        assert (again["action"], again["args"]) == (parsed["action"], parsed["args"])
    finish = parse_phone_answer('finish(message="ok")')
    assert parse_phone_answer(format_action(finish))["message"] == "ok"


def test_prompt_for_a_text_model_says_the_screenshot_is_ignored() -> None:
    payload = {"instruction": "Turn on Wi-Fi", "screenshot": "iVBORw0KGgo=", "history": []}
    messages = build_phone_messages(payload)
    assert messages[0]["role"] == "system" and 'do(action="Tap"' in messages[0]["content"]
    assert messages[-1]["role"] == "user"
    assert SCREENSHOT_IGNORED in messages[-1]["content"]
    assert "Turn on Wi-Fi" in messages[-1]["content"]
    without = build_phone_messages({"instruction": "Turn on Wi-Fi"})
    assert NO_SCREENSHOT in without[-1]["content"]


def test_prompt_for_a_vision_model_carries_the_image_and_history() -> None:
    history = [
        {"answer": '<answer>do(action="Launch", app="Settings")</answer>'},
        {"action": {"action": "Tap", "args": {"element": [500, 300]}}},
    ]
    payload = {"instruction": "Turn on Wi-Fi", "screenshot": "AAAA", "history": history}
    messages = build_phone_messages(payload, lambda data: {"type": "image", "data": data})
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == history[0]["answer"]
    assert messages[4]["content"] == '<answer>do(action="Tap", element=[500,300])</answer>'
    image, text = messages[-1]["content"]
    assert image == {"type": "image", "data": "AAAA"}
    assert "Turn on Wi-Fi" in text["text"]
