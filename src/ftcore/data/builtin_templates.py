"""ft's built-in chat templates (Jinja), chosen with ``data.chat_template: NAME``.

- ``chatml``: ChatML turns, nothing else.
- ``alpaca``: ``### Instruction:`` / ``### Response:`` blocks.
- ``chatml-tools``: ChatML with tool calling in the Hermes / Qwen2.5 style: the tool list goes into the system turn
  inside ``<tools></tools>``, the assistant's calls are ``<tool_call>{"name", "arguments"}</tool_call>`` blocks,
  and consecutive tool results form one user turn of ``<tool_response>`` blocks.
- ``chatml-think``: ``chatml-tools`` plus reasoning in the Qwen3 style: assistant turns after the last user message
  open with ``<think>reasoning</think>``; earlier assistant turns are shown without their reasoning (the template
  rewrites history, and ft's masking follows what the model sees). ``enable_thinking: false`` at generation opens
  the answer with an empty think block.

They are written for ft (not copied from a model repository); any ChatML tokenizer can use them.
"""

from __future__ import annotations

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ALPACA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

# The system turn (with the tool list when there is one), shared by both tool templates.
_SYSTEM = r"""
{%- set system = messages[0].content if messages and messages[0].role == 'system' else none -%}
{%- if tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if system is not none %}{{- system + '\n\n' -}}{% endif -%}
    {{- '# Tools\n\nYou can call the functions whose JSON schemas are inside <tools></tools>:\n<tools>' -}}
    {%- for tool in tools %}{{- '\n' + (tool | tojson) -}}{% endfor -%}
    {{- '\n</tools>\n\nTo call one, write its name and arguments as a JSON object inside <tool_call></tool_call> tags:\n' -}}
    {{- '<tool_call>\n{"name": <function name>, "arguments": <arguments object>}\n</tool_call><|im_end|>\n' -}}
{%- elif system is not none -%}
    {{- '<|im_start|>system\n' + system + '<|im_end|>\n' -}}
{%- endif -%}
"""

# The assistant's calls after its content, then the end of its turn.
_CALLS = r"""
{%- for call in message.tool_calls or [] -%}
    {%- set function = call.function if call.function is defined else call -%}
    {%- set arguments = function.arguments if function.arguments is string else (function.arguments | tojson) -%}
    {{- ('\n' if content or not loop.first else '') + '<tool_call>\n{"name": ' + (function.name | tojson) -}}
    {{- ', "arguments": ' + arguments + '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\n' -}}
"""

# Tool results: consecutive ones share one user turn.
_TOOL = r"""
{%- if loop.first or loop.previtem.role != 'tool' %}{{- '<|im_start|>user' -}}{% endif -%}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' -}}
{%- if loop.last or loop.nextitem.role != 'tool' %}{{- '<|im_end|>\n' -}}{% endif -%}
"""

CHATML_TOOLS = (
    _SYSTEM
    + r"""
{%- for message in messages -%}
    {%- if message.role == 'system' and loop.first -%}
    {%- elif message.role == 'assistant' -%}
        {%- set content = message.content or '' -%}
        {{- '<|im_start|>assistant\n' + content -}}
"""
    + _CALLS
    + r"""
    {%- elif message.role == 'tool' -%}
"""
    + _TOOL
    + r"""
    {%- else -%}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' -}}{% endif -%}
"""
)

CHATML_THINK = (
    _SYSTEM
    + r"""
{%- set ns = namespace(last_user=-1) -%}
{%- for message in messages %}{% if message.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor -%}
{%- for message in messages -%}
    {%- if message.role == 'system' and loop.first -%}
    {%- elif message.role == 'assistant' -%}
        {%- set content = message.content or '' -%}
        {%- set reasoning = message.reasoning_content if message.reasoning_content is string else '' -%}
        {%- if '</think>' in content -%}
            {%- set reasoning = content.split('</think>')[0].split('<think>')[-1] -%}
            {%- set content = content.split('</think>')[-1] -%}
        {%- endif -%}
        {%- set reasoning = reasoning.strip('\n') -%}
        {%- set content = content.lstrip('\n') -%}
        {%- if loop.index0 > ns.last_user -%}
            {{- '<|im_start|>assistant\n<think>\n' + reasoning + '\n</think>\n\n' + content -}}
        {%- else -%}
            {{- '<|im_start|>assistant\n' + content -}}
        {%- endif -%}
"""
    + _CALLS
    + r"""
    {%- elif message.role == 'tool' -%}
"""
    + _TOOL
    + r"""
    {%- else -%}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- if enable_thinking is defined and not enable_thinking %}{{- '<think>\n\n</think>\n\n' -}}{% endif -%}
{%- endif -%}
"""
)

NAMED_TEMPLATES = {"chatml": CHATML, "alpaca": ALPACA, "chatml-tools": CHATML_TOOLS, "chatml-think": CHATML_THINK}

#: The built-in template to name when a tokenizer's template cannot render what the data has.
CAPABLE = {"tools": "chatml-tools", "tool_calls": "chatml-tools", "reasoning": "chatml-think"}
