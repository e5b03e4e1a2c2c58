"""Real-world conversations through prepare_data: content parts, loss flags, tool calling and reasoning, each
layout from a file, with exact token ids and labels computed from hand-written text (not from the templates)."""

from __future__ import annotations

import json

import pytest
from data_helpers import chatml, expected, make_config, write_jsonl

from ftcore.errors import DataError
from ftcore.testing.suites import answer_loss

ASSISTANT = "<|im_start|>assistant\n"
WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
# The system turn the built-in chatml-tools template writes for the tool list, spelled out by hand.
TOOLS_TURN = (
    "<|im_start|>system\n# Tools\n\nYou can call the functions whose JSON schemas are inside <tools></tools>:\n<tools>\n"
    + json.dumps({"type": "function", "function": WEATHER})
    + "\n</tools>\n\nTo call one, write its name and arguments as a JSON object inside <tool_call></tool_call> tags:\n"
    "<tool_call>\n{\"name\": <function name>, \"arguments\": <arguments object>}\n</tool_call><|im_end|>\n"
)
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
TOOL_PIECES = [
    (TOOLS_TURN + chatml("user", "Weather in Paris?") + ASSISTANT, False),
    (CALL, True),
    ('<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n' + ASSISTANT, False),
    ("It is 21 C.<|im_end|>\n", True),
]

OPENAI_TOOLS = {
    "tools": [{"type": "function", "function": WEATHER}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": [{"type": "text", "text": "It is 21 C."}]},
    ],
}
SHAREGPT_TOOLS = {
    "conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": '{"temp": 21}'},
        {"from": "gpt", "value": "It is 21 C."},
    ],
    "tools": json.dumps([WEATHER]),  # LLaMA-Factory: bare schemas, as a JSON string
}
LLAMAFACTORY_V1 = {"messages": [
    {"role": "system", "content": [{"type": "text", "value": "Be brief."}], "loss_weight": 0.0},
    {"role": "user", "content": [{"type": "text", "value": "Hi"}], "loss_weight": 0.0},
    {"role": "assistant", "content": [{"type": "text", "value": "Hello."}], "loss_weight": 0.0},
    {"role": "user", "content": [{"type": "text", "value": "Name a "}, {"type": "text", "value": "colour."}],
     "loss_weight": 1.0},
    {"role": "assistant", "content": [{"type": "text", "value": "Blue."}], "loss_weight": 1.0},
]}
AXOLOTL_WEIGHTS = {"conversations": [
    {"from": "human", "value": "Hi"},
    {"from": "gpt", "value": "Yes.", "weight": 0},
    {"from": "human", "value": "Two?"},
    {"from": "gpt", "value": "No.", "train": True},
]}
REASONING = {"messages": [
    {"role": "user", "content": "Two plus two?"},
    {"role": "assistant", "reasoning_content": "Add them.", "content": "Four."},
    {"role": "user", "content": "Times three?"},
    {"role": "assistant", "thinking": "Four times three.", "content": "Twelve."},
]}


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def rows(tmp_path, tokenizer, records, **data):
    from ftcore.data import prepare_data

    path = write_jsonl(tmp_path / "data.jsonl", records)
    return prepare_data(make_config(str(path), tmp_path, method="instruction", **data), tokenizer).train


def check(row, tokenizer, pieces):
    ids, labels = expected(tokenizer, pieces)
    assert row["input_ids"] == ids
    assert row["labels"] == labels


@pytest.mark.parametrize("record", [OPENAI_TOOLS, SHAREGPT_TOOLS], ids=["openai-messages", "sharegpt"])
def test_tool_calls_train_the_calls_and_answers_never_the_results_or_tool_list(record, tokenizer, tmp_path):
    train = rows(tmp_path, tokenizer, [record], chat_template="chatml-tools")
    check(train[0], tokenizer, TOOL_PIECES)


def test_llamafactory_v1_parts_and_loss_weights(tokenizer, tmp_path):
    train = rows(tmp_path, tokenizer, [LLAMAFACTORY_V1])
    # A weight-0 answer is not trained; a weight-1 user message is (its whole turn, markers included).
    check(train[0], tokenizer, [
        (chatml("system", "Be brief.") + chatml("user", "Hi") + ASSISTANT + "Hello.<|im_end|>\n", False),
        (chatml("user", "Name a colour."), True),
        (ASSISTANT, False),
        ("Blue.<|im_end|>\n", True),
    ])
    # Axolotl's weight and a train flag, in ShareGPT turns.
    check(rows(tmp_path, tokenizer, [AXOLOTL_WEIGHTS])[0], tokenizer, [
        (chatml("user", "Hi") + ASSISTANT + "Yes.<|im_end|>\n" + chatml("user", "Two?") + ASSISTANT, False),
        ("No.<|im_end|>\n", True),
    ])


def test_reasoning_trains_what_a_history_rewriting_template_shows(tokenizer, tmp_path):
    # chatml-think drops the reasoning of answers before the last user message: the first answer is trained as
    # the model sees it in this conversation (no think block), the last one with its reasoning.
    train = rows(tmp_path, tokenizer, [REASONING], chat_template="chatml-think")
    check(train[0], tokenizer, [
        (chatml("user", "Two plus two?") + ASSISTANT, False),
        ("Four.<|im_end|>\n", True),
        (chatml("user", "Times three?") + ASSISTANT, False),
        ("<think>\nFour times three.\n</think>\n\nTwelve.<|im_end|>\n", True),
    ])


def test_reasoning_of_an_agent_loop_keeps_each_trained_span_on_the_final_text(tokenizer):
    from ftcore.data.builtin_templates import CHATML_THINK
    from ftcore.data.templates import render_messages

    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "Look it up.", "tool_calls": [call]},
        {"role": "tool", "content": "21"},
        {"role": "assistant", "content": "21 C.", "reasoning_content": "Report it."},
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "You are welcome.", "reasoning_content": "Be polite."},
    ]
    text, spans = render_messages(messages, tokenizer, CHATML_THINK, False)
    # Every earlier answer lost its reasoning in the final text; the spans are those answers in that text.
    assert [text[a:b] for a, b in spans] == [
        CALL, "21 C.<|im_end|>\n", "<think>\nBe polite.\n</think>\n\nYou are welcome.<|im_end|>\n"]
    assert text.count("<think>") == 1


def test_a_template_rewriting_history_beyond_recognition_is_one_line_error(tokenizer):
    from ftcore.data.templates import render_messages

    # Shortens every turn but the last two: an earlier answer's content cannot be found in the final text.
    template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n"
                "{{ m.content if loop.index0 >= messages|length - 2 else m.content[:1] }}<|im_end|>\n{% endfor %}")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "No."}]
    with pytest.raises(DataError, match=r"^the chat template renders message 0 \(user\) differently once later messages follow"):
        render_messages(messages, tokenizer, template, False)


@pytest.mark.parametrize(("record", "message"), [
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                                {"type": "image_url", "image_url": {"url": "cat.png"}}]},
                   {"role": "assistant", "content": "A cat."}]},
     "field messages[0].content[1] is a content part of type 'image_url'; this model and method train on text only"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes.", "loss_weight": 0.5}]},
     "field messages[1].loss_weight is 0.5; ft trains a message or not, so use 0 or 1"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "1", "train": True}]},
     "field messages[1].train a tool result is never trained"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "function_call", "value": "{\"arguments\": {}}"}]},
     "field conversations[1].value.name missing tool name"),
])
def test_bad_conversations_are_one_line_naming_file_line_and_field(record, message, tokenizer, tmp_path):
    ok = {"conversations": [{"from": "human", "value": "Hi"}]} if "conversations" in record else {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}]}
    with pytest.raises(DataError) as info:
        rows(tmp_path, tokenizer, [ok, record])
    assert str(info.value).startswith(f"{tmp_path / 'data.jsonl'}:2: {message}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("record", "template", "feature"), [
    (OPENAI_TOOLS, None, "has a tool list (tools) but the chat template does not render them"),
    (REASONING, "chatml-tools", "has reasoning (reasoning_content) but the chat template does not render it"),
])
def test_a_template_that_ignores_tools_or_reasoning_names_a_builtin_one(record, template, feature, tokenizer,
                                                                       tmp_path):
    ok = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}]}
    with pytest.raises(DataError) as info:
        rows(tmp_path, tokenizer, [ok, record], **({"chat_template": template} if template else {}))
    suggestion = "chatml-think" if record is REASONING else "chatml-tools"
    assert str(info.value).startswith(f"{tmp_path / 'data.jsonl'}:2: the conversation {feature}")
    assert f"set data.chat_template: {suggestion} (built in)" in str(info.value)


def test_tools_and_reasoning_together_suggest_the_template_that_renders_both(tokenizer, tmp_path):
    last = {**OPENAI_TOOLS["messages"][-1], "reasoning_content": "The tool said 21."}
    record = {**OPENAI_TOOLS, "messages": [*OPENAI_TOOLS["messages"][:-1], last]}
    with pytest.raises(DataError) as info:
        rows(tmp_path, tokenizer, [record])
    assert "has a tool list (tools) but the chat template does not render them" in str(info.value)
    assert ("set data.chat_template: chatml-think (built in, it also renders the reasoning this data has)"
            in str(info.value))
    # The suggestion is accepted: the tool call, the result and the reasoning all reach the text.
    (tmp_path / "think").mkdir()
    text = tokenizer.decode(rows(tmp_path / "think", tokenizer, [record], chat_template="chatml-think",
                                 max_seq_len=2048)[0]["input_ids"])
    assert "<tool_call>" in text and "<tool_response>" in text and "The tool said 21." in text


def test_tool_calling_data_trains_through_ft_train(tiny_model_dir, tmp_path):
    from click.testing import CliRunner

    from ftcore.cli import cli

    data = [str(write_jsonl(tmp_path / "openai.jsonl", [OPENAI_TOOLS] * 4)),
            str(write_jsonl(tmp_path / "sharegpt.jsonl", [SHAREGPT_TOOLS] * 4))]
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "model": str(tiny_model_dir), "method": "instruction", "output_dir": str(tmp_path / "run"), "seed": 0,
        "method_options": {"r": 8, "alpha": 16, "dropout": 0.0},
        "data": {"train": data, "chat_template": "chatml-tools", "max_seq_len": 512,
                 "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 12, "learning_rate": 5e-3, "lr_scheduler": "constant", "batch_size": 2,
                     "logging_steps": 1, "save_steps": 100},
    }))
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    losses = [entry["loss"] for entry in map(json.loads, lines) if "loss" in entry]
    assert len(losses) == 12
    # It learned the conversations, judged on the answers' loss of the untrained model vs the reloaded run, not on
    # the noisy logged curve: 0.62 measured on an AMD EPYC (4 steps at 1e-2, as before, gave only 0.11).
    drop = answer_loss(tiny_model_dir, tmp_path / "run") - answer_loss(tmp_path / "run", tmp_path / "run")
    assert drop > 0.2, drop


def test_preference_data_takes_content_parts_and_refuses_images():
    pytest.importorskip("ftpref")
    from ftpref.formats import preference

    from ftcore.data.formats import FieldProblem

    parts = [{"type": "text", "text": "Name a "}, {"type": "text", "value": "colour."}]
    example = preference({"prompt": [{"role": "user", "content": parts}],
                          "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}],
                          "rejected": [{"role": "assistant", "content": "No."}]})
    assert example["prompt"] == [{"role": "user", "content": "Name a colour."}]
    assert example["chosen"] == [{"role": "assistant", "content": "Blue."}]
    with pytest.raises(FieldProblem, match=r"prompt\[0\]\.content\[1\]: is a content part of type 'input_audio'"):
        preference({"prompt": [{"role": "user", "content": [parts[0], {"type": "input_audio"}]}],
                    "chosen": "a", "rejected": "b"})


@pytest.mark.parametrize(("name", "conversation", "spans"), [
    # Qwen3 drops the reasoning of answers before the last user message, tool-call turns included.
    ("qwen3", "reasoning", ["Aa.<|im_end|>\n", "<think>\nthink B\n</think>\n\nBb.<|im_end|>\n"]),
    ("qwen3", "agent", [CALL, "21 C.<|im_end|>\n", "<think>\npolite\n</think>\n\nWelcome.<|im_end|>\n"]),
    # Nemotron empties earlier think blocks; its generation prompt opens one.
    ("nemotron_3_nano", "reasoning", ["Aa.<|im_end|>\n", "think B\n</think>\nBb.<|im_end|>\n"]),
    # Phi-3 ends a conversation with an end-of-sequence token that an earlier turn does not have.
    ("phi3", "plain", ["Yes.<|end|>\n", "No.<|end|>\n<|endoftext|>"]),
])
def test_real_model_templates_that_rewrite_turns_are_masked_on_the_final_text(name, conversation, spans, tokenizer):
    """Templates of released models (as TRL ships them) that are not prefix-stable."""
    pytest.importorskip("trl")
    from importlib.resources import files

    from ftcore.data.templates import render_messages

    template = (files("trl") / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = {
        "plain": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "Two?"},
                  {"role": "assistant", "content": "No."}],
        "reasoning": [{"role": "user", "content": "A?"},
                      {"role": "assistant", "content": "Aa.", "reasoning_content": "think A"},
                      {"role": "user", "content": "B?"},
                      {"role": "assistant", "content": "Bb.", "reasoning_content": "think B"}],
        "agent": [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": "", "reasoning_content": "look", "tool_calls": [call]},
                  {"role": "tool", "content": "21"},
                  {"role": "assistant", "content": "21 C.", "reasoning_content": "report"},
                  {"role": "user", "content": "Thanks."},
                  {"role": "assistant", "content": "Welcome.", "reasoning_content": "polite"}],
    }[conversation]
    tools = json.dumps([{"type": "function", "function": WEATHER}]) if conversation == "agent" else None
    text, found = render_messages(messages, tokenizer, template, False, tools)
    assert [text[a:b] for a, b in found] == spans


def test_llamafactory_v1_reasoning_and_tool_call_parts_become_canonical_fields():
    from ftcore.data.messages import chat_message

    turn = {"role": "assistant", "loss_weight": 1.0, "content": [
        {"type": "reasoning", "value": "Look it up."},
        {"type": "text", "value": "Checking."},
        {"type": "tool_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
    ]}
    assert chat_message(turn, "messages[1]") == {
        "role": "assistant", "content": "Checking.", "reasoning_content": "Look it up.", "train": True,
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
    }


@pytest.mark.parametrize("name", ["qwen3", "nemotron_3_nano", "phi3", "chatml-tools", "chatml-think"])
def test_the_fast_renderer_gives_what_apply_chat_template_gives(name, tokenizer):
    """Data preparation renders with the compiled template directly; it must agree with transformers' own call
    on every conversation (tools, tool calls, reasoning, generation prompt), or not be used."""
    pytest.importorskip("trl")
    from importlib.resources import files

    from ftcore.data.builtin_templates import NAMED_TEMPLATES
    from ftcore.data.templates import _fast_renderer, render_chat, template_messages

    template = NAMED_TEMPLATES.get(name) or (files("trl") / "chat_templates" / f"{name}.jinja").read_text("utf-8")
    assert _fast_renderer(tokenizer, template) is not None
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather {{city}}?"},
                    {"role": "assistant", "content": "", "reasoning_content": "look", "tool_calls": [call]},
                    {"role": "tool", "content": "21", "name": "get_weather"},
                    {"role": "assistant", "content": "21 C.", "thinking": "report"}]
    tools = [{"type": "function", "function": WEATHER}]
    for upto in range(2, len(conversation) + 1):
        for prompt in (False, True):
            messages = conversation[:upto]
            want = tokenizer.apply_chat_template(template_messages(messages), tools=tools, chat_template=template,
                                                 tokenize=False, add_generation_prompt=prompt)
            assert render_chat(messages, tokenizer, template, prompt, json.dumps(tools)) == want


def test_a_tokenizer_that_renders_its_own_way_keeps_apply_chat_template(tiny_tokenizer_dir):
    """A tokenizer class whose apply_chat_template does more than the template fails the fast renderer's probes."""
    from transformers import AutoTokenizer

    from ftcore.data.builtin_templates import CHATML
    from ftcore.data.templates import _fast_renderer, render_messages

    base = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)

    class Stamped(type(base)):
        def apply_chat_template(self, *args, **kwargs):
            return "[stamped]" + super().apply_chat_template(*args, **kwargs)

    stamped = Stamped.from_pretrained(tiny_tokenizer_dir)
    assert _fast_renderer(stamped, CHATML) is None
    assert _fast_renderer(base, CHATML) is not None
    text, spans = render_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}],
                                  stamped, CHATML, False)
    assert text.startswith("[stamped]<|im_start|>user\nHi")
    assert [text[a:b] for a, b in spans] == ["Yo.<|im_end|>\n"]


def test_token_ids_and_offsets_match_the_tokenizer_call(tokenizer):
    from ftcore.data.encode import token_ids_and_offsets

    texts = ["<|im_start|>user\nHi there<|im_end|>\n", "plain words, and  spaces ", "", "é ünïcode ✓"]
    for special in (False, True):
        got = token_ids_and_offsets(tokenizer, texts, add_special_tokens=special)
        want = tokenizer(texts, add_special_tokens=special, return_offsets_mapping=True)
        assert [ids for ids, _ in got] == want["input_ids"]
        assert [[tuple(o) for o in offsets] for _, offsets in got] == [[tuple(o) for o in row] for row in want["offset_mapping"]]


def test_reasoning_the_template_leaves_out_is_counted(tokenizer, tmp_path):
    from ftcore.data import prepare_data

    path = write_jsonl(tmp_path / "data.jsonl", [REASONING])
    prepared = prepare_data(make_config(str(path), tmp_path, method="instruction", chat_template="chatml-think"),
                            tokenizer)
    warnings = {w["code"]: w["message"] for w in prepared.stats["audit"]["warnings"]}
    # chatml-think keeps the reasoning of the answer after the last user message only: the first one's is gone.
    assert warnings["reasoning_dropped"].startswith("1 reasoning block of earlier answers is left out by the chat "
                                                    f"template (it keeps only the reasoning of answers after the last "
                                                    f"user message), so it does not train, e.g. {path}:1")
