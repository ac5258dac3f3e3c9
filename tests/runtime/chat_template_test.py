import builtins

import pytest

from tfcompress.runtime import render_chat

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
# SmolLM2-135M-Instruct's template, as its GGUF stores it.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
EXPECTED = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_chatml_default_and_a_real_template():
    assert render_chat(MESSAGES) == EXPECTED
    assert render_chat(MESSAGES, SMOLLM2_TEMPLATE) == EXPECTED
    default_system = render_chat(MESSAGES[1:], SMOLLM2_TEMPLATE, add_generation_prompt=False)
    assert default_system.startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM"
    )
    assert default_system.endswith("<|im_start|>user\nHi<|im_end|>\n")


def test_template_variables_and_raise_exception():
    template = "{{ bos_token }}{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}x"
    assert render_chat(MESSAGES[1:], template, bos_token="<s>") == "<s>x"
    with pytest.raises(ValueError, match="refused the conversation: user first"):
        render_chat(MESSAGES, template)
    with pytest.raises(ValueError, match="could not be rendered"):
        render_chat(MESSAGES, "{% for %}")


def test_bad_messages():
    with pytest.raises(ValueError, match="`messages` must be a list of dicts"):
        render_chat([{"role": "user"}])


def test_without_jinja2_chatml_still_renders(monkeypatch):
    real_import = builtins.__import__

    def no_jinja(name, *args, **kwargs):
        if name.startswith("jinja2"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jinja)
    assert render_chat(MESSAGES, SMOLLM2_TEMPLATE) == EXPECTED
    with pytest.raises(ValueError, match="needs jinja2"):
        render_chat(MESSAGES, "{{ messages[0]['content'] }}")
