"""`render_chat`: a conversation as the prompt text a chat model was trained on."""

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _check_messages(messages):
    if not isinstance(messages, (list, tuple)) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise ValueError(
            "`messages` must be a list of dicts with str 'role' and 'content', e.g. "
            f"[{{'role': 'user', 'content': 'Hi'}}]. Received: {messages!r}"
        )


def _chatml(messages, add_generation_prompt):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def render_chat(messages, template=None, add_generation_prompt=True, **variables):
    """Renders `messages` with a Hugging Face-style Jinja chat template.

    The template runs in jinja2's immutable sandbox with the options and
    names Hugging Face `apply_chat_template` gives it (`trim_blocks`,
    `lstrip_blocks`, `messages`, `add_generation_prompt`,
    `raise_exception`, plus `variables` such as `bos_token`). With no
    template, ChatML is used. Without jinja2 installed, only ChatML renders
    (built in Python): a template other than ChatML then raises.

    Args:
        messages: list of `{"role": ..., "content": ...}`.
        template: the Jinja template text (a generator file's `chat_template`),
            or None for ChatML.
        add_generation_prompt: end with the assistant's turn opening.
        **variables: more names for the template (`bos_token`, `eos_token`).

    Returns:
        The prompt text.

    Raises:
        ValueError: malformed messages, a template error, a template's own
            `raise_exception`, or a non-ChatML template without jinja2.

    Example:

    ```python
    text = tfcompress.runtime.render_chat([{"role": "user", "content": "Hi"}])
    ```
    """
    _check_messages(messages)
    template = template or CHATML_TEMPLATE
    try:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        if template == CHATML_TEMPLATE or "<|im_start|>" in template:
            return _chatml(messages, add_generation_prompt)
        raise ValueError(
            "This chat template needs jinja2 to render; install it with "
            "`pip install jinja2`. Without it only ChatML templates are supported."
        ) from None

    def raise_exception(message):
        raise ValueError(f"The chat template refused the conversation: {message}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    try:
        compiled = environment.from_string(template)
        return compiled.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **variables
        )
    except TemplateError as e:
        raise ValueError(f"The chat template could not be rendered: {e}") from e
