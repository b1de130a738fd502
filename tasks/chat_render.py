"""Prefixes of one conversation rendered with the tokenizer's chat template, fast.

The assistant-only mask (tasks/instruction.py) renders several prefixes of every conversation.
`tokenizer.apply_chat_template(msgs[:n], tokenize=False, add_generation_prompt=gen)` copies and
normalizes the prefix, looks the template up and rebuilds its variables at every call: half of the
time of a render (measured: 253 us a render through it, 109 us in the template itself). Here a
conversation is normalized once, with transformers' own helpers (the ones apply_chat_template
calls, per message, so a prefix of the normalized conversation is the normalized prefix), and each
prefix goes straight to the compiled template with the same variables. The text is the same,
character for character (tests/test_sft_render.py compares both on many templates); where those
helpers are missing (another transformers), every prefix goes through apply_chat_template.
"""

from __future__ import annotations


class PrefixRenderer:
    def __init__(self, tokenizer, fast: bool = True):
        self.tokenizer = tokenizer
        self.template = None
        if not fast:
            return
        try:
            from transformers.utils import chat_template_utils as ctu

            self._normalize = ctu._normalize_chat_messages
            self._plain = ctu._plain_template_data
            self._alias = ctu._alias_reasoning_fields
            template = tokenizer.get_chat_template()
            self.template = ctu._compile_jinja_template(template)
            self.variables = self._plain(dict(tokenizer.special_tokens_map))
        except (ImportError, AttributeError, ValueError):
            self.template = None

    def conversation(self, msgs):
        """render(n, add_generation_prompt) -> the text of the first n turns, each rendered once."""
        rendered = {}
        chat = self._alias(self._plain(self._normalize(msgs))) if self.template is not None else None

        def render(n, gen=False):
            if (n, gen) not in rendered:
                if chat is None or n == 0:  # apply_chat_template also says why an empty prefix fails
                    rendered[n, gen] = self.tokenizer.apply_chat_template(msgs[:n], tokenize=False,
                                                                          add_generation_prompt=gen)
                else:
                    rendered[n, gen] = self.template.render(messages=chat[:n], tools=None, documents=None,
                                                            add_generation_prompt=gen, **self.variables)
            return rendered[n, gen]

        return render
