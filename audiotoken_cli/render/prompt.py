"""Prompts with an audio token: the placeholder ``<*>`` and the text embeddings around it.

The paper adds ``<*>`` to the tokenizer as a new word, gives it a new row in the text encoder's
input-embedding table and writes the audio token into that row. We do exactly that, except that
the row is filled per prompt by a forward hook on the input embeddings: one batch can then hold
prompts for different sounds, and the result is identical to writing the row (the hook replaces
the looked-up vectors with the very same values).

SDXL has two text encoders. Its audio token is one row for each, concatenated: (B, d1 + d2).
``DualPromptEncoder`` splices each row into its own encoder, concatenates the two encoders'
penultimate hidden states (B, 77, d1 + d2) and takes the pooled embedding from the second encoder
with its row in place, as diffusers' ``StableDiffusionXLPipeline.encode_prompt`` does.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from audiotoken_cli.config import PLACEHOLDER
from audiotoken_cli.errors import ModelError, UsageError
from audiotoken_cli.validation import prompt_problem


def check_prompt(prompt: str, placeholder: str = PLACEHOLDER) -> str:
    """The placeholder must appear exactly once: it is where the sound goes."""
    if prompt.count(placeholder) != 1:
        raise UsageError(prompt_problem(prompt, placeholder))
    return prompt



@dataclass
class TextConditioning:
    """What the UNet is conditioned on: (B, 77, D) embeddings, and SDXL's pooled (B, P)."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None


@dataclass
class PromptEncoder:
    """Encodes prompts with audio tokens spliced in at the placeholder.

    Owns (and modifies once) the tokenizer and text encoder: the placeholder becomes a new
    word with its own embedding row, as in the paper's code.
    """

    tokenizer: object
    text_encoder: torch.nn.Module
    placeholder: str = PLACEHOLDER
    hidden_layer: int | None = None
    """None: the encoder's final output (SD 1.x/2.x); -2: the penultimate layer (SDXL)."""

    def __post_init__(self) -> None:
        if self.placeholder not in self.tokenizer.get_vocab():
            self.tokenizer.add_tokens(self.placeholder)
            # The new row's initial value never matters: the hook overwrites it on every use.
            self.text_encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        self.placeholder_id = self.tokenizer.convert_tokens_to_ids(self.placeholder)

    @property
    def width(self) -> int:
        return self.text_encoder.get_input_embeddings().weight.shape[1]

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.width,)

    def check_token_width(self, token_dim: int | tuple[int, ...], embedder_name: str,
                          model_name: str) -> None:
        """``token_dim``: the embedder's width, or its per-encoder widths."""
        dims = token_dim if isinstance(token_dim, tuple) else (token_dim,)
        if dims == self.widths:
            return
        if len(dims) > 1:
            raise ModelError(
                f"{embedder_name}: the embedder makes tokens for {len(dims)} text encoders "
                f"{list(dims)} (SDXL) but {model_name} has one, {self.width} wide; use an "
                "embedder trained for this model")
        token_dim = dims[0]
        if token_dim != self.width:
            raise ModelError(
                f"{embedder_name}: the embedder makes {token_dim}-wide tokens but {model_name}'s "
                f"text encoder is {self.width} wide (768 is SD 1.x, 1024 is SD 2.x); "
                "use an embedder trained for this model"
            )

    def class_embedding(self, name: str) -> torch.Tensor:
        """Mean input embedding of a class name's word pieces, (d,): the target of the paper's
        optional class loss."""
        ids = self.tokenizer(name, add_special_tokens=False).input_ids
        table = self.text_encoder.get_input_embeddings().weight
        return table[torch.tensor(ids, device=table.device)].mean(dim=0)

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        """prompts → (B, 77) ids, padded and truncated as Stable Diffusion does.

        Each distinct prompt is tokenized once per encoder (a run repeats one template for
        every sound)."""
        cache = self.__dict__.setdefault("_ids", {})
        for prompt in set(prompts) - cache.keys():
            cache[prompt] = self.tokenizer([prompt], padding="max_length", truncation=True,
                                           return_tensors="pt", max_length=self.max_length
                                           ).input_ids[0]
        return torch.stack([cache[prompt] for prompt in prompts])  # (B, 77)

    @property
    def max_length(self) -> int:
        """77 for every Stable Diffusion; a tokenizer without a limit falls back to the encoder's."""
        limit = self.text_encoder.config.max_position_embeddings
        return min(self.tokenizer.model_max_length, limit)

    def encode(self, prompts: list[str], tokens: torch.Tensor | None = None) -> torch.Tensor:
        """prompts (B) and audio tokens (B, d) → text embeddings (B, 77, d).

        Prompts without the placeholder (negative prompts) take ``tokens=None``. Gradients flow
        back to ``tokens`` when autograd is on (training); callers that only render wrap the call
        in ``torch.inference_mode()``.
        """
        outputs = self.run(prompts, tokens)
        if self.hidden_layer is None:
            return outputs[0]
        return outputs.hidden_states[self.hidden_layer]

    def condition(self, prompts: list[str], tokens: torch.Tensor | None = None) -> TextConditioning:
        return TextConditioning(self.encode(prompts, tokens))

    def negative(self, prompt: str) -> TextConditioning:
        """The negative prompt's conditioning, (1, 77, d)."""
        return self.condition([prompt])

    def run(self, prompts: list[str], tokens: torch.Tensor | None = None):
        """The text encoder's outputs for ``prompts`` with ``tokens`` (B, d) at the placeholder."""
        ids = self.token_ids(prompts)
        if tokens is not None:
            self._check_placeholders(ids, prompts)
        device = self.text_encoder.get_input_embeddings().weight.device
        extra = {} if self.hidden_layer is None else {"output_hidden_states": True}
        with self._spliced(ids, tokens):
            return self.text_encoder(ids.to(device), **extra)

    def _check_placeholders(self, ids: torch.Tensor, prompts: list[str]) -> None:
        """Each prompt needs its placeholder inside the 77-token window (long prompts truncate)."""
        for row, prompt in zip(ids, prompts):
            if int((row == self.placeholder_id).sum()) != 1:
                raise UsageError(f"--prompt {prompt!r}: the placeholder {self.placeholder} falls "
                                 f"beyond the text encoder's {self.max_length} tokens; shorten the prompt")

    @contextmanager
    def _spliced(self, ids: torch.Tensor, tokens: torch.Tensor | None):
        """While active, the input-embedding lookup returns each prompt's audio token at its
        placeholder position."""
        if tokens is None:
            yield
            return
        mask = (ids == self.placeholder_id)  # (B, 77), one True per row

        def splice(_module, _inputs, embeddings: torch.Tensor) -> torch.Tensor:
            embeddings = embeddings.clone()  # (B, 77, d)
            embeddings[mask.to(embeddings.device)] = tokens.to(embeddings)
            return embeddings

        handle = self.text_encoder.get_input_embeddings().register_forward_hook(splice)
        try:
            yield
        finally:
            handle.remove()


class DualPromptEncoder:
    """SDXL's two text encoders, each with its own placeholder row; one token (B, d1 + d2)."""

    def __init__(self, first: PromptEncoder, second: PromptEncoder, *,
                 zeros_for_empty_negative: bool = True):
        self.parts = (first, second)
        # SDXL base's model_index.json sets force_zeros_for_empty_prompt: an empty negative
        # prompt is all zeros (embeddings and pooled), not the encoding of "".
        self.zeros_for_empty_negative = zeros_for_empty_negative

    @classmethod
    def load(cls, tokenizers, text_encoders, zeros_for_empty_negative: bool = True):
        first, second = (PromptEncoder(tok, enc, hidden_layer=-2)
                         for tok, enc in zip(tokenizers, text_encoders))
        return cls(first, second, zeros_for_empty_negative=zeros_for_empty_negative)

    @property
    def tokenizer(self):
        return self.parts[0].tokenizer

    @property
    def text_encoder(self) -> torch.nn.Module:
        return self.parts[0].text_encoder

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(part.width for part in self.parts)

    @property
    def width(self) -> int:
        return sum(self.widths)

    def check_token_width(self, token_dim: int | tuple[int, ...], embedder_name: str,
                          model_name: str) -> None:
        if isinstance(token_dim, tuple) and token_dim == self.widths:
            return
        made = list(token_dim) if isinstance(token_dim, tuple) else token_dim
        raise ModelError(
            f"{embedder_name}: the embedder makes {made}-wide tokens but {model_name} is an SDXL "
            f"with two text encoders {list(self.widths)} wide; use an embedder trained for SDXL "
            "(`audiotoken train --sd ...`)")

    def split(self, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, d1 + d2) → ((B, d1), (B, d2))."""
        return torch.split(tokens, list(self.widths), dim=-1)

    def class_embedding(self, name: str) -> torch.Tensor:
        """(d1 + d2,): each encoder's mean input embedding of the class name, concatenated."""
        return torch.cat([part.class_embedding(name) for part in self.parts])

    def encode(self, prompts: list[str], tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.condition(prompts, tokens).embeds

    def condition(self, prompts: list[str], tokens: torch.Tensor | None = None) -> TextConditioning:
        """prompts (B), tokens (B, d1 + d2) → embeds (B, 77, d1 + d2), pooled (B, P)."""
        rows = self.split(tokens) if tokens is not None else (None, None)
        first = self.parts[0].encode(prompts, rows[0])
        outputs = self.parts[1].run(prompts, rows[1])
        second = outputs.hidden_states[-2]
        embeds = torch.cat([first, second.to(first.device)], dim=-1)
        return TextConditioning(embeds, outputs[0].to(first.device))  # outputs[0]: text_embeds

    def negative(self, prompt: str) -> TextConditioning:
        if prompt == "" and self.zeros_for_empty_negative:
            made = self.condition([""])
            return TextConditioning(torch.zeros_like(made.embeds), torch.zeros_like(made.pooled))
        return self.condition([prompt])
