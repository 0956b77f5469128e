"""Open-AutoGLM phone steps: the prompt that asks for one action, and the parser of the answer.

The model answers `<think>…</think><answer>do(action="Tap", element=[x,y])</answer>` or
`finish(message="…")`. Coordinates are relative, from (0,0) top-left to (999,999)
bottom-right. The answer is parsed as a Python call expression whose arguments must be
literals; it is never evaluated, and an answer that does not fit the grammar is reported
as malformed rather than guessed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp.errors import BackendError

PhoneAnswer = dict[str, Any]
ImagePart = Callable[[str], dict[str, Any]]

MAX_COORDINATE = 1000


@dataclass(frozen=True)
class ActionRule:
    """Arguments one `do(action=…)` accepts; each kind is `point`, `text` or `duration`."""

    required: Mapping[str, str]
    optional: Mapping[str, str]


NO_ARGS = ActionRule({}, {})
PHONE_ACTIONS: dict[str, ActionRule] = {
    "Tap": ActionRule({"element": "point"}, {"message": "text"}),
    "Double Tap": ActionRule({"element": "point"}, {}),
    "Long Press": ActionRule({"element": "point"}, {}),
    "Swipe": ActionRule({"start": "point", "end": "point"}, {}),
    "Type": ActionRule({"text": "text"}, {}),
    "Type_Name": ActionRule({"text": "text"}, {}),
    "Launch": ActionRule({"app": "text"}, {}),
    "Back": NO_ARGS,
    "Home": NO_ARGS,
    "Wait": ActionRule({}, {"duration": "duration"}),
    "Take_over": ActionRule({}, {"message": "text"}),
    "Note": ActionRule({}, {"message": "text"}),
    "Call_API": ActionRule({"instruction": "text"}, {}),
    "Interact": NO_ARGS,
}

SYSTEM_PROMPT = """You operate an Android phone to carry out the user's task, one action per turn.
Each turn you see the task and the current screen. Reply in exactly this form:
<think>short reasoning about the screen and the next step</think>
<answer>one action</answer>

Actions (coordinates are relative: (0,0) is the top-left corner, (999,999) the bottom-right):
do(action="Launch", app="Settings")            open an app by name
do(action="Tap", element=[x,y])                tap a point
do(action="Tap", element=[x,y], message="…")   tap a sensitive button (payment, privacy)
do(action="Type", text="…")                    type into the focused field (clears it first)
do(action="Type_Name", text="…")               type a person's name
do(action="Swipe", start=[x1,y1], end=[x2,y2]) swipe to scroll or navigate
do(action="Long Press", element=[x,y])         long press a point
do(action="Double Tap", element=[x,y])         double tap a point
do(action="Back")                              press the back button
do(action="Home")                              go to the home screen
do(action="Wait", duration="2 seconds")        wait for the page to load
do(action="Take_over", message="…")            ask the user to log in or solve a check
do(action="Note", message="…")                 record the page content
do(action="Call_API", instruction="…")         summarise the page or recorded notes
do(action="Interact")                          ask the user to choose between options
finish(message="…")                            the task is done; say what happened
"""

NO_SCREENSHOT = "(No screenshot was sent for this step.)"
SCREENSHOT_IGNORED = "(A screenshot was sent, but this model reads text only; it is ignored.)"
LATER_SCREEN = "Screen after the previous action."

_THINK = re.compile(r"<think>(.*?)(?:</think>|<answer>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_CALL_START = re.compile(r"\b(?:do|finish)\s*\(")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_LENIENT_TYPE = re.compile(
    r'^do\(\s*action\s*=\s*"(Type|Type_Name)"\s*,\s*text\s*=\s*"(.*)"\s*\)$', re.DOTALL
)


class MalformedAnswer(BackendError, ValueError):
    """The model's answer does not fit the Open-AutoGLM action grammar."""

    code = "malformed_answer"


# ---------------------------------------------------------------- prompt


def build_phone_messages(
    payload: Mapping[str, Any], image_part: ImagePart | None = None
) -> list[dict[str, Any]]:
    """Chat messages for one step; `image_part` turns base64 PNG into a content part."""
    instruction = str(payload["instruction"])
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for index, step in enumerate(payload.get("history") or []):
        step = dict(step)
        asked = step.get("instruction") or (f"Task: {instruction}" if index == 0 else LATER_SCREEN)
        messages.append({"role": "user", "content": str(asked)})
        messages.append({"role": "assistant", "content": _earlier_answer(step)})

    text = f"Task: {instruction}\nWhat is the next action?"
    screenshot = payload.get("screenshot")
    if screenshot and image_part is not None:
        content: Any = [image_part(str(screenshot)), {"type": "text", "text": text}]
    else:
        content = f"{SCREENSHOT_IGNORED if screenshot else NO_SCREENSHOT}\n{text}"
    messages.append({"role": "user", "content": content})
    return messages


def _earlier_answer(step: Mapping[str, Any]) -> str:
    if step.get("answer"):
        return str(step["answer"])
    action = step.get("action")
    if isinstance(action, Mapping) and action.get("action"):
        return f"<answer>{format_action(action)}</answer>"
    return "<answer>(unknown)</answer>"


def format_action(parsed: Mapping[str, Any]) -> str:
    """The call text of a parsed action, e.g. for replaying history to the model."""
    args: Mapping[str, Any] = parsed.get("args") or {}
    if parsed.get("action") == "finish":
        return f"finish(message={_literal(parsed.get('message', args.get('message', '')))})"
    rendered = [f"action={_literal(parsed['action'])}"]
    rendered += [f"{key}={_literal(value)}" for key, value in args.items()]
    return f"do({', '.join(rendered)})"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(item) for item in value) + "]"
    return repr(value)


# ---------------------------------------------------------------- parser


def parse_phone_answer(raw: str) -> PhoneAnswer:
    """The action of an answer, or `action: None` with a `malformed_answer` error."""
    thinking, code = split_answer(raw)
    try:
        action, args = parse_action_call(code)
    except MalformedAnswer as exc:
        return {
            "action": None,
            "args": {},
            "thinking": thinking,
            "answer": code,
            "raw": raw,
            "error": {"code": "malformed_answer", "message": str(exc)},
        }
    result: PhoneAnswer = {
        "action": action,
        "args": args,
        "thinking": thinking,
        "answer": code,
        "raw": raw,
    }
    if action == "finish":
        result["message"] = args["message"]
    return result


def split_answer(raw: str) -> tuple[str, str]:
    """(thinking, action code) of an answer, with or without the think/answer tags."""
    think_match = _THINK.search(raw)
    answer_match = _ANSWER.search(raw)
    if answer_match:
        code = answer_match.group(1)
        thinking = think_match.group(1) if think_match else raw[: answer_match.start()]
    else:
        call = _CALL_START.search(raw)
        cut = call.start() if call else len(raw)
        code = raw[cut:]
        thinking = think_match.group(1) if think_match else raw[:cut]
    thinking = thinking.replace("<think>", "").replace("</think>", "").strip()
    return thinking, _FENCE.sub("", code.strip()).strip()


def parse_action_call(code: str) -> tuple[str, dict[str, Any]]:
    """("Tap", {"element": [x, y]}) for `do(action="Tap", element=[x, y])`, and so on."""
    if not code:
        raise MalformedAnswer("the answer holds no action")
    name, keywords = _call_keywords(code)
    if name == "finish":
        if set(keywords) != {"message"} or not isinstance(keywords["message"], str):
            raise MalformedAnswer("finish() takes exactly one string argument, message")
        return "finish", {"message": keywords["message"]}
    action = keywords.pop("action", None)
    if not isinstance(action, str):
        raise MalformedAnswer("do() needs a string argument action=")
    rule = PHONE_ACTIONS.get(action)
    if rule is None:
        raise MalformedAnswer(f"unknown action {action!r}")
    missing = [key for key in rule.required if key not in keywords]
    unknown = [key for key in keywords if key not in rule.required and key not in rule.optional]
    if missing or unknown:
        raise MalformedAnswer(
            f"{action}: missing {missing or 'nothing'}, unknown {unknown or 'none'}"
        )
    kinds = {**rule.required, **rule.optional}
    return action, {
        key: _checked(action, key, kinds[key], value) for key, value in keywords.items()
    }


def _call_keywords(code: str) -> tuple[str, dict[str, Any]]:
    try:
        tree = _parse_expression(code)
    except SyntaxError:
        lenient = _LENIENT_TYPE.match(code)
        if lenient:  # Open-AutoGLM models leave quotes inside Type text unescaped
            return "do", {"action": lenient.group(1), "text": lenient.group(2)}
        raise MalformedAnswer("the action is not a single call expression") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise MalformedAnswer("the action must be a call of do(...) or finish(...)")
    if call.func.id not in ("do", "finish"):
        raise MalformedAnswer(f"unknown function {call.func.id!r}")
    if call.args or any(keyword.arg is None for keyword in call.keywords):
        raise MalformedAnswer("only keyword arguments are allowed")
    keywords: dict[str, Any] = {}
    for keyword in call.keywords:
        try:
            keywords[str(keyword.arg)] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            raise MalformedAnswer(f"argument {keyword.arg!r} is not a literal") from None
    return call.func.id, keywords


def _parse_expression(code: str) -> ast.Expression:
    try:
        return ast.parse(code, mode="eval")
    except SyntaxError:
        # A raw newline inside a string literal is the usual cause; one call spans one line.
        return ast.parse(code.replace("\r", "\\r").replace("\n", "\\n"), mode="eval")


def _checked(action: str, key: str, kind: str, value: Any) -> Any:
    if kind == "point":
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in value)
        ):
            raise MalformedAnswer(f"{action}: {key} must be [x, y]")
        if not all(0 <= c <= MAX_COORDINATE for c in value):
            raise MalformedAnswer(f"{action}: {key} {list(value)} is outside 0..{MAX_COORDINATE}")
        return [int(c) if float(c).is_integer() else c for c in value]
    if kind == "duration":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise MalformedAnswer(f"{action}: {key} must be like '2 seconds'")
        return value
    if not isinstance(value, str):
        raise MalformedAnswer(f"{action}: {key} must be a string")
    return value
